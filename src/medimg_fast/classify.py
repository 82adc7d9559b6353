"""Classifiers on radiomics features: honest cross-validation and safe persistence.

:func:`train` fits a scikit-learn :class:`~sklearn.pipeline.Pipeline` (median
imputation of NaN features, standard scaling where the model needs it, the model),
evaluates it by stratified k-fold cross-validation, grouped by subject when ``groups``
is given so that no subject is in two folds, and refits it on all the data.
:func:`save_model` writes the pipeline with skops (no pickle) and a JSON model card;
:func:`load_model` reads it back trusting only an explicit list of types.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "MODELS",
    "TRUSTED_TYPES",
    "LoadedModel",
    "TrainResult",
    "load_model",
    "row_fingerprints",
    "save_model",
    "train",
    "univariate_auc",
]

#: Cross-validated ROC AUC or balanced accuracy at or above this is "near perfect": on real
#: radiomics data it more often means a leak (a feature that encodes the class by
#: construction, such as the shape of a ring drawn around a tumour) than a solved problem.
NEAR_PERFECT = 0.98

#: Model names accepted by :func:`train`.
MODELS = ("random_forest", "logistic_regression", "svm", "hist_gradient_boosting")

#: The only non-default types :func:`load_model` lets skops construct: those of the
#: pipelines :func:`train` builds.  Anything else in a file is refused.
TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
)

_MODEL_FILE = "model.skops"
_CARD_FILE = "model_card.json"


def _build(model: str, random_state):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if model == "random_forest":
        steps.append(("model", RandomForestClassifier(n_estimators=300,
                                                      random_state=random_state)))
    elif model == "logistic_regression":
        steps += [("scale", StandardScaler()),
                  ("model", LogisticRegression(max_iter=5000))]
    elif model == "svm":
        # SVC(probability=True) is deprecated in scikit-learn 1.9: Platt scaling by an
        # explicit sigmoid calibration gives the probabilities instead
        steps += [("scale", StandardScaler()),
                  ("model", CalibratedClassifierCV(SVC(random_state=random_state),
                                                   method="sigmoid", ensemble=False))]
    elif model == "hist_gradient_boosting":
        steps.append(("model", HistGradientBoostingClassifier(random_state=random_state)))
    else:
        raise ValueError(f"`model` must be one of {MODELS}, got {model!r}")
    return Pipeline(steps)


def _as_table(features, *, name="features"):
    """``(float64 2-D array, column names or None)`` of a table-like ``features``."""
    if hasattr(features, "columns") and hasattr(features, "to_numpy"):  # pandas
        cols = [str(c) for c in features.columns]
        return features.to_numpy(dtype=np.float64), cols
    if isinstance(features, Mapping):  # column name -> values
        cols = [str(c) for c in features]
        return np.column_stack([np.asarray(features[c], np.float64) for c in features]), cols
    if (isinstance(features, Sequence) and len(features) and isinstance(features[0], Mapping)):
        cols = [str(c) for c in features[0]]
        for i, row in enumerate(features):
            if [str(c) for c in row] != cols:
                raise ValueError(f"`{name}` row {i} has other keys than row 0")
        return np.asarray([[row[c] for c in features[0]] for row in features], np.float64), cols
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D table, got shape {arr.shape}")
    return arr, None


def _column_names(features):
    """Column names of a table-like ``features``, or None for a bare array."""
    if hasattr(features, "columns"):
        return [str(c) for c in features.columns]
    if isinstance(features, Mapping):
        return [str(c) for c in features]
    if isinstance(features, Sequence) and len(features) and isinstance(features[0], Mapping):
        return [str(c) for c in features[0]]
    return None


def _select_columns(features, names):
    """The columns ``names`` of a table-like ``features``, in that order, same kind."""
    if hasattr(features, "columns"):
        by_name = {str(c): c for c in features.columns}
        return features[[by_name[n] for n in names]]
    if isinstance(features, Mapping):
        by_name = {str(c): c for c in features}
        return {n: features[by_name[n]] for n in names}
    by_name = {str(c): c for c in features[0]}
    return [{n: row[by_name[n]] for n in names} for row in features]


def _data_hash(X, y, names) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(names).encode())
    h.update(np.ascontiguousarray(X, np.float64).tobytes())
    h.update(json.dumps([str(v) for v in y]).encode())
    return h.hexdigest()


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : sklearn.pipeline.Pipeline
        Refitted on all the data.
    metrics : dict
        Cross-validated: ``accuracy``, ``balanced_accuracy``, ``roc_auc`` (mean over
        folds, with ``*_std`` and ``*_folds``), and from the pooled out-of-fold
        predictions ``confusion_matrix`` (rows true, columns predicted, in ``classes``
        order), ``precision`` and ``recall`` per class.
    feature_names : list of str
    classes : list
    fold_of_sample : ndarray of int
        The test fold of each sample.
    extra : dict
        ``oof_proba``: the out-of-fold class probabilities of every sample (columns in
        ``classes`` order), from which the pooled metrics were computed.
    model_name : str
    data_hash : str
        SHA-256 of feature names, values and labels.
    settings : dict or None
        Feature-extraction settings, kept for the model card.
    warnings : list of str
        What the user should check before trusting the metrics (near-perfect CV and the
        features that carry it; :func:`medimg_fast.demo.train_from_table` adds more).
    provenance : dict
        For the model card: ``label_column``, ``group_column``, ``dropped_features``,
        ``extraction`` (how the features were made) and ``training_rows``
        (:func:`row_fingerprints` of the training table).
    """

    model: object
    metrics: dict
    feature_names: list
    classes: list
    fold_of_sample: np.ndarray
    model_name: str
    data_hash: str
    settings: dict | None = None
    cv: int = 5
    random_state: int | None = 0
    extra: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


def univariate_auc(X, y, names):
    """``{name: AUC}`` of each feature alone as a score for the second class (binary labels),
    folded so that 0.5 is chance and 1.0 a perfect separation in either direction; NaN
    values are left out.  Empty for more than two classes."""
    from sklearn.metrics import roc_auc_score

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) != 2:
        return {}
    out = {}
    for j, name in enumerate(names):
        ok = np.isfinite(X[:, j])
        target = y[ok] == classes[1]
        if target.all() or not target.any():
            continue
        auc = float(roc_auc_score(target, X[ok, j]))
        out[name] = max(auc, 1.0 - auc)
    return out


def near_perfect_warning(metrics, X, y, names, *, threshold=NEAR_PERFECT):
    """A warning text when cross-validated AUC or balanced accuracy is near perfect, naming
    the features that separate the classes alone (univariate AUC), else None."""
    score = max(metrics.get("roc_auc", 0.0) or 0.0, metrics.get("balanced_accuracy", 0.0))
    if not score >= threshold:
        return None
    aucs = univariate_auc(X, y, names)
    strong = sorted(((a, n) for n, a in aucs.items() if a >= 0.95), reverse=True)
    text = (f"near-perfect cross-validation (ROC AUC {metrics.get('roc_auc', float('nan')):.3f},"
            f" balanced accuracy {metrics.get('balanced_accuracy', float('nan')):.3f}): check "
            "for a leak, e.g. a feature that encodes the class by construction")
    if strong:
        families = sorted({n.split("_", 1)[0] for _, n in strong})
        shown = ", ".join(f"{n} (AUC {a:.3f})" for a, n in strong[:8])
        more = f" and {len(strong) - 8} more" if len(strong) > 8 else ""
        text += (f"; {len(strong)} feature(s) separate the classes alone (univariate AUC >= "
                 f"0.95), families {families}: {shown}{more}")
    return text


def row_fingerprints(features, names) -> list:
    """A short hash of each row's values of the columns `names`: the model card keeps those
    of the training table, so that predictions on training rows can be recognised."""
    X, _ = _as_table(_select_columns(features, names))
    X = np.where(np.isnan(X), 0.0, X)  # one NaN spelling
    return [hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest()[:16] for row in X]


def train(features, labels, *, model="random_forest", groups=None, cv=5, random_state=0,
          settings=None) -> TrainResult:
    """Cross-validate a classifier on a feature table, then refit it on all of it.

    Parameters
    ----------
    features : DataFrame, dict of columns, list of dicts or 2-D array
        One row per sample (e.g. the dicts of :func:`medimg_fast.features.extract_features`).
        NaN values are imputed with the training-fold median.
    labels : array-like
        Class of each row.
    model : {"random_forest", "logistic_regression", "svm", "hist_gradient_boosting"}
    groups : array-like, optional
        Subject of each row: folds are then :class:`~sklearn.model_selection.StratifiedGroupKFold`
        so that all rows of a subject are in the same fold.
    cv : int
        Number of folds (>= 2, and at most the size of the smallest class).
    random_state : int or None
        Seeds the fold shuffling and the model.
    settings : FeatureSettings or dict, optional
        The extraction settings, recorded in the result (and the model card).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> data = load_breast_cancer(as_frame=True)
    >>> res = train(data.data, data.target, model="logistic_regression", cv=3)
    >>> res.metrics["accuracy"] > 0.9
    True
    """
    from sklearn.base import clone
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_score,
        recall_score,
        roc_auc_score,
    )
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}, got {model!r}")
    X, names = _as_table(features)
    if names is None:
        names = [f"feature_{i}" for i in range(X.shape[1])]
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"`labels` must be 1-D with one label per row ({len(X)}), got shape {y.shape}"
        )
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"`labels` must hold at least two classes, got {classes.tolist()}")
    if not isinstance(cv, numbers.Integral) or isinstance(cv, bool) or cv < 2:
        raise ValueError(f"`cv` must be an integer >= 2, got {cv!r}")
    if cv > counts.min():
        raise ValueError(
            f"`cv`={cv} folds need at least {cv} samples per class; the smallest class "
            f"has {counts.min()}"
        )
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(f"`groups` must have one entry per row, got shape {groups.shape}")
        splitter = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=random_state)
    else:
        splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    pipeline = _build(model, random_state)
    proba = np.zeros((len(y), len(classes)))
    fold_of = np.full(len(y), -1)
    per_fold = {"accuracy": [], "balanced_accuracy": [], "roc_auc": []}
    for k, (tr, te) in enumerate(splitter.split(X, y, groups)):
        est = clone(pipeline).fit(X[tr], y[tr])
        p = np.zeros((len(te), len(classes)))
        # a training fold may lack a class: its probability column stays 0
        p[:, np.searchsorted(classes, est.classes_)] = est.predict_proba(X[te])
        pred = classes[np.argmax(p, axis=1)]
        proba[te] = p
        fold_of[te] = k
        per_fold["accuracy"].append(accuracy_score(y[te], pred))
        per_fold["balanced_accuracy"].append(balanced_accuracy_score(y[te], pred))
        per_fold["roc_auc"].append(_auc(roc_auc_score, y[te], p, classes))
    pred = classes[np.argmax(proba, axis=1)]
    metrics = {}
    for key, vals in per_fold.items():
        metrics[key] = float(np.nanmean(vals))
        metrics[f"{key}_std"] = float(np.nanstd(vals))
        metrics[f"{key}_folds"] = [float(v) for v in vals]
    metrics["roc_auc_pooled"] = _auc(roc_auc_score, y, proba, classes)
    metrics["confusion_matrix"] = confusion_matrix(y, pred, labels=classes).tolist()
    metrics["precision"] = dict(zip(map(str, classes), map(float, precision_score(
        y, pred, labels=classes, average=None, zero_division=0))))
    metrics["recall"] = dict(zip(map(str, classes), map(float, recall_score(
        y, pred, labels=classes, average=None, zero_division=0))))
    metrics["n_samples"] = len(y)
    metrics["cv"] = int(cv)
    metrics["grouped"] = groups is not None
    final = clone(pipeline).fit(X, y)
    if settings is not None:
        from medimg_fast.features import FeatureSettings

        settings = FeatureSettings.coerce(settings).to_dict()
    warnings = []
    leak = near_perfect_warning(metrics, X, y, list(names))
    if leak:
        warnings.append(leak)
    return TrainResult(model=final, metrics=metrics, feature_names=list(names),
                       classes=classes.tolist(), fold_of_sample=fold_of, model_name=model,
                       data_hash=_data_hash(X, y, names), settings=settings, cv=int(cv),
                       random_state=random_state, extra={"oof_proba": proba},
                       warnings=warnings)


def _auc(roc_auc_score, y, proba, classes):
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    if len(present) < len(classes):  # a fold without some class: AUC over those present
        cols = np.searchsorted(classes, present)
        p = proba[:, cols]
        p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-300, None)
        return float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=present))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("medimg-fast", "numpy", "scipy", "scikit-learn", "skops", "scikit-image"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and np.isnan(x):
        return None
    return x


def save_model(result: TrainResult, path) -> Path:
    """Write ``result``'s model with skops and its JSON model card into folder ``path``.

    Files: ``model.skops`` (:func:`skops.io.dump`, no pickle) and ``model_card.json``
    (model name, feature names, classes, feature settings, training-data hash, package
    versions, cross-validation metrics, the training warnings, the label and group columns,
    the dropped features, how the features were extracted and the training rows'
    fingerprints).  Returns the folder.
    """
    import skops.io as sio

    if not isinstance(result, TrainResult):
        raise TypeError(f"`result` must be a TrainResult from train(), got {type(result).__name__}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    sio.dump(result.model, folder / _MODEL_FILE)
    card = {
        "format": "medimg-fast model card",
        "format_version": 1,
        "model": result.model_name,
        "feature_names": result.feature_names,
        "classes": result.classes,
        "settings": result.settings,
        "training_data_sha256": result.data_hash,
        "cv": result.cv,
        "random_state": result.random_state,
        "metrics": result.metrics,
        "versions": _versions(),
        "warnings": list(result.warnings),
        **{k: result.provenance.get(k) for k in ("label_column", "group_column",
                                                  "dropped_features", "imputed", "extraction",
                                                  "training_rows")},
    }
    (folder / _CARD_FILE).write_text(json.dumps(_jsonable(card), indent=2, sort_keys=True))
    return folder


@dataclass
class LoadedModel:
    """A model read by :func:`load_model`: the pipeline and its model card."""

    pipeline: object
    card: dict

    @property
    def feature_names(self) -> list[str]:
        return list(self.card["feature_names"])

    def predict(self, features):
        """Labels and class probabilities for a feature table.

        Parameters
        ----------
        features : DataFrame, dict of columns or list of dicts
            Must hold every feature the model was trained on (matched by name, in any
            order; extra columns are ignored).

        Returns
        -------
        labels : ndarray
        probabilities : ndarray, shape (n_samples, n_classes)
            Columns in the order of ``card["classes"]``.

        Raises
        ------
        ValueError
            If feature columns are missing; the message lists them.
        """
        cols = _column_names(features)
        if cols is None:
            raise TypeError(
                "`features` must have named columns (a DataFrame, a dict of columns or a "
                "list of dicts) so that they can be matched to the model's features"
            )
        want = self.feature_names
        missing = [c for c in want if c not in cols]
        if missing:
            raise ValueError(
                f"`features` lacks {len(missing)} of the model's feature columns: {missing}"
            )
        # select before converting: other columns (path, subject, ...) may hold text
        X, _ = _as_table(_select_columns(features, want))
        proba = self.pipeline.predict_proba(X)
        classes = np.asarray(self.pipeline.classes_)
        return classes[np.argmax(proba, axis=1)], proba


def load_model(path) -> LoadedModel:
    """Read a folder written by :func:`save_model`.

    The skops file is checked first: if it asks for any type outside
    :data:`TRUSTED_TYPES` (and skops' own safe defaults), nothing is loaded and a
    ValueError names the types.  pickle is never used.
    """
    import skops.io as sio

    folder = Path(path)
    model_file, card_file = folder / _MODEL_FILE, folder / _CARD_FILE
    for f in (model_file, card_file):
        if not f.is_file():
            raise FileNotFoundError(f"`path` {str(folder)!r} holds no {f.name}")
    card = json.loads(card_file.read_text())
    untrusted = sio.get_untrusted_types(file=model_file)
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ValueError(
            f"{model_file} asks for types that are not trusted: {refused}; refusing to load"
        )
    pipeline = sio.load(model_file, trusted=list(untrusted))
    return LoadedModel(pipeline=pipeline, card=card)
