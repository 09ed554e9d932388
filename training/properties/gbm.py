"""LightGBM stage of Dobbels et al. (2019), photometry baselines, and permutation importances.

The point model minimises the uncertainty-weighted L1 loss of Dobbels eq. 2,
``L1 = mean(|Y_true - Y_pred| / dY)``, with ``dY`` floored at 5 % of ``|Y_true|`` so that a few
objects with tiny quoted errors cannot dominate. That loss is a weighted mean absolute error with
weights ``1 / dY``, so it is trained as LightGBM's own ``l1`` objective with those sample weights:
LightGBM then refits every leaf to the *weighted median* of its residuals, which a custom
gradient/hessian objective cannot do (the L1 hessian is zero). Early stopping watches the same
weighted L1 on the validation set. Trees as in the paper: 40 leaves, >= 150 objects per leaf
(fewer for small sets), 40 % of the features and 80 % of the objects per tree.

Interval models are LightGBM quantile regressions at the edges of the 68.27/95.45/99.73 %
intervals, widened on the validation set by split-conformal offsets (Romano et al. 2019), so their
coverage holds on new data from the same distribution.
"""

from __future__ import annotations

import numpy as np

from galaxy_inspector.physical_properties.predict import QUANTILE_LEVELS

__all__ = ["RELATIVE_ERROR_FLOOR", "floored_errors", "dobbels_l1", "gbm_params",
           "train_point_model", "train_quantile_models", "conformal_offsets",
           "permutation_importance", "photometry_baselines"]

RELATIVE_ERROR_FLOOR = 0.05
INTERVAL_PAIRS = ((0, 5, 0.9973), (1, 4, 0.9545), (2, 3, 0.6827))


def floored_errors(values, errors, floor: float = RELATIVE_ERROR_FLOOR) -> np.ndarray:
    """``max(dY, floor |Y|)``; a missing (NaN) error becomes the floor."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    errors = np.asarray(errors, dtype=np.float64)
    errors = np.where(np.isfinite(errors), errors, 0.0)
    out = np.maximum(errors, floor * values)
    return np.where(out > 0, out, floor * max(np.median(values), 1e-12))


def dobbels_l1(truth, prediction, errors) -> float:
    """Dobbels et al. eq. 2: mean of |truth - prediction| / dY (errors already floored)."""
    return float(np.mean(np.abs(np.asarray(truth) - np.asarray(prediction)) / errors))


def gbm_params(n_train: int, seed: int, threads: int = 0, **overrides) -> dict:
    """The paper's tree settings, with the leaf minimum scaled down for small sets."""
    params = {"num_leaves": 40, "min_data_in_leaf": int(min(150, max(5, n_train // 40))),
              "feature_fraction": 0.4, "bagging_fraction": 0.8, "bagging_freq": 1,
              "learning_rate": 0.05, "seed": seed, "deterministic": True,
              "num_threads": threads, "verbosity": -1, "force_col_wise": True}
    params.update(overrides)
    return params


def train_point_model(x_train, y_train, err_train, x_val, y_val, err_val, seed: int = 1,
                      threads: int = 0, rounds: int = 3000, patience: int = 100,
                      feature_names=None):
    """Uncertainty-weighted L1 LightGBM with early stopping on the validation weighted L1."""
    import lightgbm as lgb

    names = feature_names or "auto"
    train = lgb.Dataset(x_train, y_train, weight=1.0 / err_train, feature_name=names,
                        free_raw_data=False)
    val = lgb.Dataset(x_val, y_val, weight=1.0 / err_val, reference=train,
                      feature_name=names, free_raw_data=False)
    params = gbm_params(len(y_train), seed, threads, objective="l1", metric="l1")
    return lgb.train(params, train, num_boost_round=rounds, valid_sets=[val],
                     callbacks=[lgb.early_stopping(patience, verbose=False)])


def train_quantile_models(x_train, y_train, x_val, y_val, seed: int = 1, threads: int = 0,
                          rounds: int = 2000, patience: int = 50, feature_names=None) -> dict:
    """One quantile model per level of ``QUANTILE_LEVELS`` (unweighted, so the quantiles are
    those of the label distribution), each early-stopped on its own validation pinball loss."""
    import lightgbm as lgb

    names = feature_names or "auto"
    models = {}
    for level in QUANTILE_LEVELS:
        train = lgb.Dataset(x_train, y_train, feature_name=names, free_raw_data=False)
        val = lgb.Dataset(x_val, y_val, reference=train, feature_name=names,
                          free_raw_data=False)
        params = gbm_params(len(y_train), seed, threads, objective="quantile", alpha=level,
                            metric="quantile")
        models[level] = lgb.train(params, train, num_boost_round=rounds, valid_sets=[val],
                                  callbacks=[lgb.early_stopping(patience, verbose=False)])
    return models


def conformal_offsets(quantile_predictions: np.ndarray, truth: np.ndarray) -> list[float]:
    """Split-conformal widening per interval (99.73, 95.45, 68.27 %) from validation data.

    ``quantile_predictions`` (N, 6) in ``QUANTILE_LEVELS`` order. The offset is the finite-sample
    corrected ``level`` quantile of ``max(lo - y, y - hi)``: adding it to both edges makes the
    interval hold ``level`` of exchangeable new objects.
    """
    q = np.sort(quantile_predictions, axis=1)
    n = len(truth)
    out = []
    for lo, hi, level in INTERVAL_PAIRS:
        scores = np.maximum(q[:, lo] - truth, truth - q[:, hi])
        rank = min(1.0, np.ceil((n + 1) * level) / n)
        out.append(float(np.quantile(scores, rank, method="higher")))
    return out


def permutation_importance(predict, x_val, y_val, err_val, names, groups=None, seed: int = 1,
                           top: int | None = None):
    """Increase of the validation L1 when one feature (or a named group) is shuffled.

    Dobbels §4.2: permuting a column keeps its distribution but breaks its link to the target.
    Returns a list of ``(name, increase)`` sorted by decreasing importance.
    """
    rng = np.random.default_rng(seed)
    base = dobbels_l1(y_val, predict(x_val), err_val)
    columns = ({g: [i for i, gg in enumerate(groups) if gg == g] for g in dict.fromkeys(groups)}
               if groups is not None else {n: [i] for i, n in enumerate(names)})
    result = []
    for name, idx in columns.items():
        shuffled = x_val.copy()
        perm = rng.permutation(len(x_val))
        shuffled[:, idx] = x_val[perm][:, idx]
        result.append((name, dobbels_l1(y_val, predict(shuffled), err_val) - base))
    result.sort(key=lambda t: -t[1])
    return result[:top] if top else result


def photometry_baselines(x_train, y_train, x_val, y_val, x_test, seed: int = 1,
                         threads: int = 0) -> dict:
    """Wu & Boada's baselines on integrated photometry: a random forest and a LightGBM (L2).

    Returns test predictions ``{"random_forest": (N,), "lightgbm": (N,)}``.
    """
    import lightgbm as lgb
    from sklearn.ensemble import RandomForestRegressor

    x_train, y_train, x_val, y_val = (np.ascontiguousarray(a) for a in
                                      (x_train, y_train, x_val, y_val))
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=3, max_features=0.6,
                                   random_state=seed, n_jobs=threads or None)
    forest.fit(x_train, y_train)
    params = gbm_params(len(y_train), seed, threads, objective="l2", metric="l2",
                        feature_fraction=1.0)
    booster = lgb.train(params, lgb.Dataset(x_train, y_train), num_boost_round=3000,
                        valid_sets=[lgb.Dataset(x_val, y_val)],
                        callbacks=[lgb.early_stopping(100, verbose=False)])
    return {"random_forest": forest.predict(x_test), "lightgbm": booster.predict(x_test)}
