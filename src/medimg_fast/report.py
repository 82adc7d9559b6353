"""The HTML report of a study: archive, example slices, throughput, CV metrics, features.

:func:`write_report` writes one self-contained ``report.html``: its images are embedded as
base64 PNG, so the single file can be mailed or attached to a paper's supplement (copies of
the PNGs are also written to ``images/`` beside it, named in each image's ``data-file``).
It records the settings, the medimg-fast version and the command line that made it, and
the training warnings.  Figures are drawn with matplotlib's Agg renderer on bare
``Figure`` objects (no display, pyplot untouched).  The PNG helpers (:func:`save_slices_png`, :func:`save_confusion_png`,
:func:`save_roc_png`, :func:`save_bar_png`) are public so other commands (``bench``) reuse
them.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

__all__ = [
    "feature_importances",
    "out_of_fold_probabilities",
    "save_bar_png",
    "save_confusion_png",
    "save_roc_png",
    "save_slices_png",
    "write_maps_report",
    "write_report",
]


def _figure(figsize):
    # A bare Figure renders through Agg without pyplot: no display, no global state, so
    # writing a report never changes the backend of a user's interactive session.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def save_slices_png(path, panels, *, title=None, roi=None, slice_index=None):
    """A row of 2-D images, each with its own grey scale and a colour bar.

    Parameters
    ----------
    path : str or os.PathLike
    panels : sequence of (str, 2-D array) or (str, 2-D array, (low, high))
        A panel's display window (e.g. a CT soft-tissue window in HU) when given, else the
        2nd-98th percentile of its values (a filter response gets its own scale).  The
        window is written under each panel.
    title : str, optional
    roi : 2-D bool array, optional
        Outlined in red over every panel.
    slice_index : int, optional
        Shown in each panel's title (``z = k``).
    """
    n = len(panels)
    fig = _figure((3.0 * n, 3.1))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, (name, image, *window) in zip(axes[0], panels):
        image = np.asarray(image, dtype=np.float64)
        finite = image[np.isfinite(image)]
        if window:
            lo, hi = window[0]
        else:
            lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        hi = hi if hi > lo else lo + 1
        shown = ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        if roi is not None and np.asarray(roi).any():
            ax.contour(np.asarray(roi, dtype=float), levels=[0.5], colors="red",
                       linewidths=0.8)
        label = name if slice_index is None else f"{name}, z = {slice_index}"
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"window [{lo:.4g}, {hi:.4g}]", fontsize=7)
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_confusion_png(path, matrix, classes):
    """Confusion matrix (rows true, columns predicted) with counts in the cells."""
    matrix = np.asarray(matrix)
    fig = _figure((1.2 + 0.9 * len(classes), 1.0 + 0.9 * len(classes)))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=30)
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(int(v)), ha="center", va="center",
                color="white" if v > top / 2 else "black")
    ax.set_title("cross-validated confusion matrix", fontsize=9)
    return _save(fig, path)


def save_roc_png(path, y_true, proba, classes):
    """ROC curve(s) of out-of-fold probabilities: one for two classes, one-vs-rest otherwise."""
    from sklearn.metrics import auc, roc_curve

    y_true = np.asarray(y_true).astype(str)
    classes = [str(c) for c in classes]
    fig = _figure((3.6, 3.4))
    ax = fig.subplots()
    positives = classes[1:] if len(classes) == 2 else classes
    for c in positives:
        k = classes.index(c)
        fpr, tpr, _ = roc_curve(y_true == c, proba[:, k])
        ax.plot(fpr, tpr, label=f"{c} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("ROC, out-of-fold", fontsize=9)
    return _save(fig, path)


def save_bar_png(path, names, values, *, xlabel, title=None, errors=None):
    """Horizontal bars, first name on top; a log scale when the values span more than two
    decades, so no bar is too small to see."""
    names = [str(n) for n in names]
    fig = _figure((6.0, 0.35 * len(names) + 1.0))
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    values = np.asarray(values, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    log = positive.size >= 2 and positive.max() / positive.min() > 100
    ax.barh(y, values, xerr=errors, color="#4477aa")
    ax.set_yticks(y, names, fontsize=8)
    if log:
        ax.set_xscale("log")
        xlabel = f"{xlabel} (log scale)"
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def out_of_fold_probabilities(training):
    """Class probabilities of each sample from the model of the fold that held it out,
    as :func:`medimg_fast.classify.train` recorded them (``training.extra["oof_proba"]``);
    the ROC curve needs them."""
    return np.asarray(training.extra["oof_proba"])


def feature_importances(training, X, y, *, n_repeats=5):
    """``(kind, importances)`` of the refitted model, one value per feature.

    Impurity importance when the final estimator has ``feature_importances_`` (random
    forest), else permutation importance of the balanced accuracy on the training table.
    """
    model = training.model
    final = model[-1] if hasattr(model, "__getitem__") else model
    values = getattr(final, "feature_importances_", None)
    if values is not None and len(values) == len(training.feature_names):
        return "impurity (mean decrease in Gini)", np.asarray(values, dtype=float)
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, np.asarray(X, dtype=np.float64),
                                    np.asarray(y).astype(str), n_repeats=n_repeats,
                                    random_state=0, scoring="balanced_accuracy")
    return "permutation (drop in balanced accuracy)", result.importances_mean


def family_contributions(training, X, y, groups=None):
    """Per feature family (the IBSI prefix: ``stat``, ``ih``, ``cm``, ``morph``...): the
    number of features, the best feature alone (univariate AUC, binary labels) and the
    cross-validated ROC AUC of the same model trained on that family only, with the same
    folds; rows sorted by that AUC.  What tells a reader which families help."""
    from .classify import train, univariate_auc

    names = list(training.feature_names)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(str)
    aucs = univariate_auc(X, y, names)
    rows = []
    for family in sorted({n.split("_", 1)[0] for n in names}):
        cols = [i for i, n in enumerate(names) if n.split("_", 1)[0] == family]
        best = max(((aucs.get(names[i], math.nan), names[i]) for i in cols),
                   key=lambda t: -1 if math.isnan(t[0]) else t[0])
        try:
            alone = train(X[:, cols], y, model=training.model_name, groups=groups,
                          cv=training.cv, random_state=training.random_state)
            cv_auc = alone.metrics["roc_auc"]
        except ValueError:
            cv_auc = math.nan
        rows.append({"family": family, "features": len(cols), "CV ROC AUC alone": cv_auc,
                     "best feature": best[1], "its univariate AUC": best[0]})
    rows.sort(key=lambda r: -r["CV ROC AUC alone"] if math.isfinite(r["CV ROC AUC alone"])
              else 0.0)
    return rows


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def _cell(value, limit=60):
    text = _fmt(value)
    if len(text) <= limit:
        return f"<td>{html.escape(text)}</td>"
    # Long text (paths, messages) is cut at the start, where paths share their prefix;
    # the whole text is on hover.
    return (f"<td class='long' title=\"{html.escape(text, quote=True)}\">"
            f"&hellip;{html.escape(text[-(limit - 1):])}</td>")


def _table(rows, columns, *, max_rows=None):
    if not rows:
        return "<p><em>none</em></p>"
    shown = rows if max_rows is None else rows[:max_rows]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "\n".join(
        "<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>"
        for r in shown)
    more = ""
    if max_rows is not None and len(rows) > max_rows:
        more = f"<p><em>{len(rows) - max_rows} more rows not shown</em></p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>{more}"


def _img(report_dir, path, alt):
    import base64

    rel = os.path.relpath(Path(path), report_dir).replace(os.sep, "/")
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" data-file="{html.escape(rel)}" '
            f'alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}</figcaption></figure>')


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1em auto; max-width: 1360px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; max-width: 100%;
        table-layout: auto; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; max-width: 32em;
         overflow-wrap: anywhere; }
td.long { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.scroll { overflow-x: auto; max-width: 100%; }
.warning { background: #fde2e1; padding: 0.5em; border-left: 4px solid #c62828; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; }
.note { background: #fff4e0; padding: 0.5em; }
"""


def write_maps_report(path, image, maps, *, roi=None, title="medimg-fast feature maps",
                      settings=None, per_row=4):
    """A self-contained HTML page showing feature maps beside the image.

    The axial slice shown is the one with the most ROI voxels (the middle slice without an
    ROI); each map has its own grey scale and colour bar, the ROI is outlined in red.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file; its images go to ``images/`` beside it and are embedded too.
    image : 3-D array
        The image the maps were computed on, ``(z, y, x)``.
    maps : dict of str to 3-D array
        As :func:`medimg_fast.features.feature_maps` returns them.
    roi : 3-D bool array, optional
    settings : dict, optional
        Shown under the images.
    per_row : int
        Panels per image row (the first row starts with the image itself).
    """
    from . import __version__

    path = Path(path)
    images_dir = path.parent / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image)
    roi = None if roi is None else np.asarray(roi, dtype=bool)
    z = (int(np.argmax(roi.sum(axis=(1, 2)))) if roi is not None and roi.any()
         else image.shape[0] // 2)
    panels = [("image", image[z])] + [(name, np.asarray(m)[z]) for name, m in maps.items()]
    figures = []
    for k in range(0, len(panels), per_row):
        png = save_slices_png(images_dir / f"maps_{k // per_row:03d}.png", panels[k:k + per_row],
                              roi=None if roi is None else roi[z], slice_index=z)
        figures.append(_img(path.parent, png, ", ".join(n for n, _ in panels[k:k + per_row])))
    body = [f"<h1>{html.escape(title)}</h1>",
            (f"<p>{len(maps)} feature map(s), slice z = {z} of {image.shape[0]}; medimg-fast "
             f"{html.escape(__version__)}.</p>"), *figures]
    if settings:
        body.append("<h2>Settings</h2><pre>"
                    + html.escape(json.dumps(settings, indent=1, sort_keys=True, default=str))
                    + "</pre>")
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{_CSS}</style></head><body>"
                    + "\n".join(body) + "</body></html>")
    return path


def write_report(path, *, title="medimg-fast study", source="", features=None, errors=None,
                 training=None, metrics=None, feature_names=(), label="label", stages=(),
                 real_scans=None, real_images=(), examples=None, note=None, top_features=15,
                 warnings=(), settings=None, command_line=None, groups=None):
    """Write ``report.html`` and its images.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file; images go to ``images/`` beside it.
    title, source : str
    features : pandas.DataFrame, optional
        The features table of :func:`medimg_fast.archive.process_archive`.
    errors : pandas.DataFrame, optional
        Its errors table.
    training : medimg_fast.classify.TrainResult, optional
        Gives the confusion matrix, the ROC curve (out-of-fold) and feature importances.
    metrics : dict, optional
        Cross-validated metrics (``training.metrics`` by default).
    feature_names : sequence of str
        The model's features (``training.feature_names`` by default).
    label : str
        The class column of `features`.
    stages : sequence of dict
        ``stage, seconds, volumes, megavoxels``: the throughput table and chart.
    real_scans : list of dict, optional
        Rows of the real-scan summary (:func:`medimg_fast.demo.summarise_real_scans`).
    real_images, examples : sequence of dict
        ``{"title", "path"}`` of PNG images already written.
    note : str, optional
        A remark shown at the top (e.g. why no model was trained).
    top_features : int
        How many of the most important features to show.
    warnings : sequence of str
        Shown at the top (near-perfect CV, ungrouped subjects, dropped features, ...).
    settings : dict, optional
        The extraction settings, shown as JSON.
    command_line : str, optional
        The command that made the report.
    groups : array-like, optional
        The subject of each row of `features`, for the per-family cross-validation.

    Returns
    -------
    pathlib.Path
        `path`.
    """
    path = Path(path)
    report_dir = path.parent
    images = report_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    if training is not None:
        metrics = metrics or training.metrics
        feature_names = feature_names or training.feature_names
    metrics = metrics or {}
    import json
    import shlex
    import sys

    from . import __version__

    if command_line is None:
        command_line = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style></head><body>"),
             f"<h1>{html.escape(title)}</h1>",
             (f"<p>Source: <code>{html.escape(str(source))}</code><br>Written "
             f"{datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node()} "
             f"({os.cpu_count()} CPU cores, Python {platform.python_version()}) by "
             f"medimg-fast {html.escape(__version__)}.<br>Command: "
             f"<code>{html.escape(command_line)}</code></p>")]
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    if warnings:
        parts.append("<h2>Warnings</h2>")
        parts.extend(f"<p class='warning'>{html.escape(w)}</p>" for w in warnings)
    if settings:
        parts.append("<details><summary>Settings</summary><pre>"
                     + html.escape(json.dumps(settings, indent=2, sort_keys=True, default=str))
                     + "</pre></details>")

    n_ok = 0 if features is None else len(features)
    n_err = 0 if errors is None else len(errors)
    parts.append(f"<h2>Archive</h2><p>{n_ok} volume(s) processed, {n_err} in error.</p>")
    if features is not None and n_ok:
        shown = [c for c in ("path", "mask", "roi", label, "subject", "stat_mean", "stat_var",
                             "morph_volume", "cm_contrast_3D_avg", "cm_joint_entr_3D_avg")
                 if c in features.columns and (c in ("path", label)
                                               or features[c].notna().any())]
        rows = features[shown].to_dict("records")
        for r in rows:
            for c in ("path", "mask"):
                if c in r:
                    r[c] = _shown_path(r[c])
        parts.append("<div class='scroll'>" + _table(rows, shown, max_rows=300) + "</div>")
        timing = [c for c in ("time_read_s", "time_preprocess_s", "time_filter_s",
                              "time_features_s", "time_write_s", "time_total_s", "megavoxels",
                              "megavoxels_per_s") if c in features.columns]
        if timing:
            parts.append("<h3>Per-volume timings (seconds per stage: on the worker; the write on the driver)</h3>")
            cols = ["path", *(["roi"] if "roi" in shown else []), *timing]
            rows = features[cols].to_dict("records")
            for r in rows:
                r["path"] = _shown_path(r["path"])
            parts.append("<div class='scroll'>" + _table(rows, cols, max_rows=300) + "</div>")
    parts.append("<h3>Volumes in error</h3>")
    if errors is not None and n_err:
        cols = [c for c in ("path", "mask", "roi", "stage", "error_type", "message")
                if c in errors.columns and (c != "roi" or errors[c].notna().any())]
        rows = errors[cols].to_dict("records")
        for r in rows:
            for c in ("path", "mask"):
                if c in r:
                    r[c] = _shown_path(r[c])
        parts.append("<div class='scroll'>" + _table(rows, cols, max_rows=300) + "</div>")
    else:
        parts.append("<p><em>none</em></p>")

    if examples:
        parts.append("<h2>Example slices and filter responses</h2>")
        parts.extend(_img(report_dir, e["path"], e["title"]) for e in examples)

    if real_scans is not None:
        parts.append("<h2>Real scans shipped with pydicom and nibabel</h2>")
        cols = ["name", "format", "shape", "spacing_mm", "modality", "min", "mean", "max",
                "smoothed_std", "seconds", "status"]
        parts.append(_table(real_scans, cols))
        parts.extend(_img(report_dir, e["path"], e["title"]) for e in real_images)

    if stages:
        parts.append("<h2>Throughput per stage</h2>")
        rows = []
        for s in stages:
            sec = float(s.get("seconds", math.nan))
            vols, mvox = s.get("volumes"), s.get("megavoxels", math.nan)
            rows.append({"stage": s["stage"], "seconds": sec, "volumes": vols,
                         "volumes/s": (vols / sec if vols and sec > 0 else math.nan),
                         "megavoxels/s": (mvox / sec if mvox is not None and sec > 0
                                          else math.nan)})
        parts.append(_table(rows, ["stage", "seconds", "volumes", "volumes/s",
                                   "megavoxels/s"]))
        png = save_bar_png(images / "stage_seconds.png", [r["stage"] for r in rows],
                           [r["seconds"] for r in rows], xlabel="seconds",
                           title="wall time per stage")
        parts.append(_img(report_dir, png, "wall time per stage"))

    parts.append("<h2>Cross-validated classification</h2>")
    if metrics:
        keys = [k for k in ("accuracy", "balanced_accuracy", "roc_auc") if k in metrics]
        rows = [{"metric": k, "mean": metrics[k], "std": metrics.get(f"{k}_std"),
                 "per fold": ", ".join(_fmt(v) for v in metrics.get(f"{k}_folds", []))}
                for k in keys]
        if "roc_auc_pooled" in metrics:
            rows.append({"metric": "roc_auc (pooled out-of-fold)",
                         "mean": metrics["roc_auc_pooled"]})
        parts.append(f"<p>Model <code>{html.escape(str(getattr(training, 'model_name', '')))}"
                     f"</code>, {metrics.get('cv', '?')}-fold "
                     f"{'grouped by subject' if metrics.get('grouped') else 'stratified'} "
                     f"cross-validation on {metrics.get('n_samples', n_ok)} volumes, "
                     f"{len(feature_names)} features.</p>")
        parts.append(_table(rows, ["metric", "mean", "std", "per fold"]))
        if "precision" in metrics:
            rows = [{"class": c, "precision": metrics["precision"].get(c),
                     "recall": metrics.get("recall", {}).get(c)} for c in metrics["precision"]]
            parts.append(_table(rows, ["class", "precision", "recall"]))
    else:
        parts.append("<p><em>no model trained</em></p>")

    if training is not None and features is not None:
        X = features[list(training.feature_names)].to_numpy(dtype=np.float64)
        y = features[label].astype(str).to_numpy()
        classes = [str(c) for c in training.classes]
        if "confusion_matrix" in metrics:
            png = save_confusion_png(images / "confusion_matrix.png",
                                     metrics["confusion_matrix"], classes)
            parts.append(_img(report_dir, png, "confusion matrix (out-of-fold)"))
        proba = out_of_fold_probabilities(training)
        png = save_roc_png(images / "roc_curve.png", y, proba, classes)
        parts.append(_img(report_dir, png, "ROC curve (out-of-fold)"))

        kind, values = feature_importances(training, X, y)
        order = np.argsort(values)[::-1][:top_features]
        names = [training.feature_names[i] for i in order]
        parts.append(f"<h2>Most important features</h2><p>Importance: {html.escape(kind)}, "
                     "of the model refitted on all volumes.</p>")
        png = save_bar_png(images / "feature_importance.png", names, values[order],
                           xlabel="importance", title=kind)
        parts.append(_img(report_dir, png, "most important features"))
        parts.append(_table([{"feature": n, "importance": float(values[i])}
                             for n, i in zip(names, order)], ["feature", "importance"]))
        rows = family_contributions(training, X, y, groups)
        parts.append("<h2>Feature families</h2><p>Each family alone: the same model and "
                     "folds on its features only, and its best single feature.</p>")
        parts.append(_table(rows, ["family", "features", "CV ROC AUC alone", "best feature",
                                   "its univariate AUC"]))

    parts.append("</body></html>")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _shown_path(p):
    """The whole path (a long one is cut at the start in the table, whole on hover): two
    patients' ``CT/image`` must never look the same."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return str(p)
