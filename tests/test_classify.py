"""Training, honest evaluation and safe persistence of classifiers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from medimg_fast import classify
from medimg_fast.classify import MODELS, load_model, save_model, train


@pytest.fixture(scope="module")
def breast_cancer():
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


def test_breast_cancer_default_model_reaches_095(breast_cancer):
    X, y = breast_cancer
    res = train(X, y)
    assert res.model_name == "random_forest"
    assert res.metrics["accuracy"] >= 0.95
    assert res.metrics["roc_auc"] >= 0.95
    assert len(res.metrics["accuracy_folds"]) == 5
    cm = np.asarray(res.metrics["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == len(y)
    # pooled out-of-fold accuracy agrees with the confusion matrix
    assert np.trace(cm) / cm.sum() == pytest.approx(res.metrics["accuracy"], abs=0.01)
    assert set(res.metrics["recall"]) == {"0", "1"}
    assert res.feature_names == list(X.columns)
    assert res.model.predict(X.to_numpy()[:3]).shape == (3,)


def _small_table(rng, n=60):
    y = np.arange(n) % 2
    X = pd.DataFrame({"a": rng.normal(size=n) + 2.0 * y, "b": rng.normal(size=n),
                      "c": rng.normal(size=n) - y})
    X.loc[3, "b"] = np.nan  # imputed
    return X, y


@pytest.mark.parametrize("model", MODELS)
def test_every_model_saves_and_loads(tmp_path, rng, model):
    X, y = _small_table(rng)
    res = train(X, y, model=model, cv=3, settings={"bin_width": 25.0})
    assert res.metrics["accuracy"] > 0.7
    folder = save_model(res, tmp_path / model)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["feature_names"] == ["a", "b", "c"]
    assert card["training_data_sha256"] == res.data_hash
    assert card["settings"]["bin_width"] == 25.0
    assert card["versions"]["scikit-learn"]
    assert card["metrics"]["accuracy"] == pytest.approx(res.metrics["accuracy"])
    loaded = load_model(folder)
    shuffled = X[["c", "a", "b"]].assign(extra=1.0)  # column order and extras do not matter
    labels, proba = loaded.predict(shuffled)
    np.testing.assert_array_equal(labels, res.model.predict(X.to_numpy()))
    np.testing.assert_allclose(proba, res.model.predict_proba(X.to_numpy()))


def test_missing_columns_are_refused_by_name(tmp_path, rng):
    X, y = _small_table(rng)
    loaded = load_model(save_model(train(X, y, model="logistic_regression", cv=3),
                                   tmp_path / "m"))
    with pytest.raises(ValueError, match=r"lacks 2 .*\['a', 'c'\]"):
        loaded.predict(X[["b"]])
    with pytest.raises(TypeError, match="named columns"):
        loaded.predict(X.to_numpy())


def test_untrusted_types_are_refused(tmp_path, rng):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = _small_table(rng)
    folder = save_model(train(X, y, model="logistic_regression", cv=3), tmp_path / "m")
    evil = make_pipeline(FunctionTransformer(json.loads))  # a function skops does not trust
    sio.dump(evil, folder / "model.skops")
    with pytest.raises(ValueError, match="not trusted"):
        load_model(folder)


def test_groups_never_split_across_folds(rng):
    n_subjects = 20
    groups = np.repeat(np.arange(n_subjects), 3)
    y = (groups % 2).astype(int)
    X = rng.normal(size=(len(y), 4)) + y[:, None]
    res = train(X, y, groups=groups, cv=4, model="logistic_regression")
    for g in range(n_subjects):
        assert len(set(res.fold_of_sample[groups == g])) == 1
    assert res.metrics["grouped"] is True
    assert res.feature_names == [f"feature_{i}" for i in range(4)]


def test_multiclass_roc_auc_one_vs_rest():
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    data = load_iris()
    res = train(data.data, data.target, model="logistic_regression", cv=5)
    assert res.metrics["accuracy"] > 0.9
    assert np.asarray(res.metrics["confusion_matrix"]).shape == (3, 3)
    assert 0.9 < res.metrics["roc_auc"] <= 1.0
    assert 0.9 < res.metrics["roc_auc_pooled"] <= 1.0
    # independent reference: scikit-learn's own out-of-fold probabilities, same folds
    ref = cross_val_predict(clone(res.model), data.data, data.target, method="predict_proba",
                            cv=StratifiedKFold(5, shuffle=True, random_state=0))
    np.testing.assert_allclose(res.extra["oof_proba"], ref, rtol=1e-12, atol=1e-12)
    assert res.metrics["roc_auc_pooled"] == pytest.approx(
        roc_auc_score(data.target, ref, multi_class="ovr"), rel=1e-12)


def test_validation(rng):
    X, y = _small_table(rng)
    with pytest.raises(ValueError, match="`model`"):
        train(X, y, model="xgboost")
    with pytest.raises(ValueError, match="`cv`"):
        train(X, y, cv=1)
    with pytest.raises(ValueError, match="samples per class"):
        train(X, y, cv=40)
    with pytest.raises(ValueError, match="`labels`"):
        train(X, y[:-1])
    with pytest.raises(ValueError, match="two classes"):
        train(X, np.zeros(len(y)))


def test_near_perfect_cv_is_flagged_with_the_features_that_carry_it(rng):
    n = 40
    y = np.array(["a", "b"] * (n // 2))
    table = {"stat_mean": rng.normal(size=n), "morph_ring": (y == "b") * 5.0 + rng.normal(size=n) * 0.1}
    result = classify.train(table, y, cv=4)
    assert result.metrics["roc_auc"] > 0.98
    (warning,) = result.warnings
    assert "near-perfect" in warning and "morph_ring (AUC 1.000)" in warning
    assert "stat_mean" not in warning and "['morph']" in warning
    # Independent reference for the univariate AUC: scikit-learn on the raw column.
    from sklearn.metrics import roc_auc_score

    auc = classify.univariate_auc(np.column_stack([table["stat_mean"]]), y, ["stat_mean"])
    ref = roc_auc_score(y == "b", table["stat_mean"])
    assert auc["stat_mean"] == pytest.approx(max(ref, 1 - ref))


def test_train_from_table_names_dropped_features_and_offers_imputation(rng, tmp_path):
    import json

    import pandas as pd

    from medimg_fast.demo import train_from_table

    n = 40
    y = np.array(["a", "b"] * (n // 2))
    gappy = rng.normal(size=n) + (y == "b")
    gappy[3] = np.nan
    table = pd.DataFrame({"path": [f"/d/{i}.nii" for i in range(n)], "label": y,
                          "patient_id": [f"P{i // 2}" for i in range(n)],
                          "stat_mean": rng.normal(size=n) + (y == "b"),
                          "ih_constant": np.ones(n), "cm_gappy": gappy,
                          "time_total_s": rng.random(n)})
    training, model_dir = train_from_table(table, cv=4, out_dir=tmp_path / "m")
    assert training.feature_names == ["stat_mean"]
    text = " | ".join(training.warnings)
    assert "1 constant feature(s) dropped: ih_constant" in text
    assert "1 non-finite feature(s) dropped: cm_gappy; pass --impute" in text
    assert "'patient_id' looks like a subject identifier" in text
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["dropped_features"] == {"constant": ["ih_constant"], "non-finite": ["cm_gappy"]}
    assert card["label_column"] == "label" and card["group_column"] is None
    assert card["warnings"] == training.warnings and len(card["training_rows"]) == n
    imputed, _ = train_from_table(table, cv=4, impute=True, group="patient_id")
    assert imputed.feature_names == ["stat_mean", "cm_gappy"]
    assert not any("subject identifier" in w for w in imputed.warnings)
