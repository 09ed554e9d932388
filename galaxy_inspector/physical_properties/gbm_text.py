"""LightGBM text models, read without putting the process at risk.

LightGBM's parser trusts its input: a garbled model text (a corrupted or hostile bundle) aborts or
segfaults the process that parses it, and a parsed tree whose child or feature indices are out of
range reads memory out of bounds when it predicts. A property bundle's models are therefore
checked twice before the app's own process hands them to LightGBM:

* ``check_model_text`` — the structure, in Python: the header (one class, one tree per
  iteration, the feature count the card implies), every tree in order with its size as the
  header's ``tree_sizes`` says (LightGBM splits the text by them), array lengths, numeric splits
  only, split features within the feature count, child indices that form a tree (each node and
  leaf reached exactly once, children after their parents), finite leaf values;
* ``probe_models`` — in a spawned child process (``verify_models``): LightGBM parses every model
  and predicts probe rows, so whatever this check missed crashes the child, not the app.

The child calls LightGBM's C library through ctypes rather than importing the ``lightgbm``
package (which imports scikit-learn: seconds), and answers in JSON, so nothing it sends is
unpickled. Both checks together add about 0.9 s to loading the shipped Dobbels bundle's 14
models on 2 cores (``benchmarks/bundle_checks.py``).
"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["MAX_LEAVES", "check_model_text", "probe_models", "verify_models"]

#: LightGBM's own limit on the leaves of one tree.
MAX_LEAVES = 131072
_TREE = "\nTree="
_END = "\nend of trees"


def _fields(lines) -> dict:
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _arrays(trees: list, key: str, counts: np.ndarray, kind: type) -> np.ndarray:
    """The ``key`` arrays of all ``trees`` (field dicts) concatenated, each of its tree's count."""
    have = [t.get(key, "").split() for t, n in zip(trees, counts, strict=True) if n]
    lengths = np.array([len(values) for values in have], dtype=int)
    if not np.array_equal(lengths, counts[counts > 0]):
        i = int(np.flatnonzero(counts > 0)[np.argmax(lengths != counts[counts > 0])])
        raise ValueError(f"tree {i}: {key} has the wrong number of values")
    try:  # Python's own parsing: several times faster than numpy's from strings
        return np.array([kind(v) for values in have for v in values])
    except (ValueError, OverflowError):
        raise ValueError(f"{key} holds a value that is not a number") from None


def _positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(tree, index within its tree)`` of each element of arrays of ``counts`` per tree."""
    tree = np.repeat(np.arange(len(counts)), counts)
    return tree, np.arange(len(tree)) - np.repeat(np.cumsum(counts) - counts, counts)


def _first_tree(bad: np.ndarray, tree_of: np.ndarray) -> int:
    return int(tree_of[np.argmax(bad)])


def _check_trees(trees: list, n_features: int) -> None:
    """Every tree's arrays, vectorised over the whole model (thousands of small trees)."""
    try:
        leaves = np.array([int(t.get("num_leaves", "")) for t in trees], dtype=int)
    except ValueError:
        raise ValueError("a num_leaves is not a number") from None
    bad = (leaves < 1) | (leaves > MAX_LEAVES)
    if bad.any():
        raise ValueError(f"tree {int(np.argmax(bad))}: num_leaves is not 1 to {MAX_LEAVES}")
    for i, tree in enumerate(trees):
        if tree.get("num_cat", "0") != "0" or tree.get("is_linear", "0") != "0":
            raise ValueError(f"tree {i}: categorical or linear splits, which these models "
                             "never use")
    leaf_tree, leaf_local = _positions(leaves)
    values = _arrays(trees, "leaf_value", leaves, float)
    if not np.isfinite(values).all():
        raise ValueError(f"tree {_first_tree(~np.isfinite(values), leaf_tree)}: leaf_value "
                         "holds a value that is not finite")
    nodes = leaves - 1
    node_tree, node_local = _positions(nodes)
    if not len(node_tree):
        return
    feature = _arrays(trees, "split_feature", nodes, int)
    bad = (feature < 0) | (feature >= n_features)
    if bad.any():
        raise ValueError(f"tree {_first_tree(bad, node_tree)}: split_feature indexes a feature "
                         f"outside 0 to {n_features - 1}")
    _arrays(trees, "threshold", nodes, float)
    categorical = (_arrays(trees, "decision_type", nodes, int) & 1) == 1
    if categorical.any():
        raise ValueError(f"tree {_first_tree(categorical, node_tree)}: categorical splits, "
                         "which these models never use")
    # Node j of tree t is (t, j) = t * (MAX_LEAVES + 1) + j. LightGBM numbers a node after its
    # parent; with every node but the root and every leaf (~index) named exactly once, the
    # children of each tree make one tree, and a path from the root always ends at a leaf.
    child = np.concatenate([_arrays(trees, "left_child", nodes, int),
                            _arrays(trees, "right_child", nodes, int)])
    parent = np.tile(node_local, 2)
    internal = child >= 0
    key = np.tile(node_tree, 2) * (MAX_LEAVES + 1) + np.where(internal, child, ~child)
    wanted_nodes = (node_tree * (MAX_LEAVES + 1) + node_local)[node_local > 0]
    split = np.repeat(nodes > 0, leaves)  # one-leaf trees have no children
    wanted_leaves = (leaf_tree * (MAX_LEAVES + 1) + leaf_local)[split]
    if not (np.all(child[internal] > parent[internal])
            and np.array_equal(np.sort(key[internal]), wanted_nodes)
            and np.array_equal(np.sort(key[~internal]), wanted_leaves)):
        raise ValueError("left_child/right_child do not form trees")


def check_model_text(text: str, n_features: int) -> None:
    """Raise ``ValueError`` (a short reason) unless ``text`` is a well-formed LightGBM text
    model of one regression output over ``n_features`` numeric features."""
    body, end, _ = text.partition(_END)
    head, *trees = body.split(_TREE)
    if not head.startswith("tree\n") or not end:
        raise ValueError("it is not a complete LightGBM text model")
    header = _fields(head.splitlines())
    for key, wanted in (("num_class", "1"), ("num_tree_per_iteration", "1"),
                        ("max_feature_idx", str(n_features - 1))):
        if header.get(key) != wanted:
            raise ValueError(f"its header says {key}={header.get(key)}, not {wanted}")
    if not trees:
        raise ValueError("it holds no trees")
    sizes = header.get("tree_sizes", "").split()
    if sizes != [str(len(_TREE) - 1 + len(tree) + 1) for tree in trees]:
        raise ValueError("its tree_sizes do not match its trees")
    fields = []
    for i, tree in enumerate(trees):
        index, *lines = tree.split("\n")
        if index != str(i):
            raise ValueError(f"tree {i} is numbered {index!r}")
        fields.append(_fields(lines))
    _check_trees(fields, n_features)


def _lightgbm_library():
    """LightGBM's C library, found without importing the ``lightgbm`` package (which imports
    scikit-learn: seconds, where the child should take a fraction of one)."""
    import ctypes
    import importlib.util
    from pathlib import Path

    root = Path(importlib.util.find_spec("lightgbm").origin).parent
    for folder in (root / "lib", root / "bin", root):
        for path in sorted(folder.glob("lib_lightgbm.*")):
            return ctypes.CDLL(str(path))
    raise OSError(f"LightGBM's library is not in {root}")


def _probe(lib, text: str, rows: np.ndarray) -> str:
    """LightGBM's C API on one model text: "" when it parses, has ``rows``' feature count and
    predicts finite values for them, else the reason."""
    import ctypes

    handle, n_iterations, n_features = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_int()
    if lib.LGBM_BoosterLoadModelFromString(text.encode(), ctypes.byref(n_iterations),
                                           ctypes.byref(handle)):
        lib.LGBM_GetLastError.restype = ctypes.c_char_p
        return lib.LGBM_GetLastError().decode(errors="replace").strip().splitlines()[0]
    try:
        lib.LGBM_BoosterGetNumFeature(handle, ctypes.byref(n_features))
        if n_features.value != rows.shape[1]:
            return f"it reads {n_features.value} features, not {rows.shape[1]}"
        out, n_out = np.full(len(rows), np.nan), ctypes.c_int64()
        lib.LGBM_BoosterPredictForMat(
            handle, rows.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(1),  # float64
            ctypes.c_int32(rows.shape[0]), ctypes.c_int32(rows.shape[1]), ctypes.c_int(1),
            ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(-1), b"num_threads=1",
            ctypes.byref(n_out), out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        return "" if np.isfinite(out).all() else "its predictions of probe rows are not finite"
    finally:
        lib.LGBM_BoosterFree(handle)


def probe_models(texts: dict, n_features: int) -> dict:
    """In a child process: ``{name: problem}`` for the models LightGBM cannot parse or whose
    predictions for probe rows (zeros, missing values, random values) are not finite."""
    lib = _lightgbm_library()
    rows = np.zeros((4, n_features))
    rows[1] = np.nan
    rows[2:] = np.random.default_rng(0).normal(0.0, 10.0, (2, n_features))
    problems = {name: _probe(lib, text, rows) for name, text in texts.items()}
    return {name: problem for name, problem in problems.items() if problem}


def _probe_child(connection, texts: dict, n_features: int) -> None:
    """The child's work; LightGBM's own complaints (it prints them) go nowhere: the parent
    reports the outcome in one line."""
    import os

    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    connection.send_bytes(json.dumps(probe_models(texts, n_features)).encode())


def verify_models(texts: dict, n_features: int) -> None:
    """Raise ``ValueError`` naming the first model of ``texts`` (name -> model text) that
    ``check_model_text`` refuses, or that LightGBM cannot parse or predict with in a spawned
    child process (a crash there included), so that the caller's process can parse them safely.
    The child runs while this process checks the structure.
    """
    import multiprocessing as mp

    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_probe_child, args=(send, texts, n_features), daemon=True)
    child.start()
    send.close()
    try:
        for name, text in texts.items():
            try:
                check_model_text(text, n_features)
            except ValueError as exc:
                child.kill()
                raise ValueError(f"{name}: {exc}") from None
        problems = json.loads(receive.recv_bytes())  # JSON: nothing from the child is unpickled
    except EOFError:  # the child died without an answer
        child.join()
        if child.exitcode is not None and child.exitcode < 0:
            raise ValueError(f"LightGBM crashed reading them (signal {-child.exitcode})") from None
        raise ValueError(f"the process that checks them failed (exit status {child.exitcode})"
                         ) from None
    finally:
        receive.close()
        child.join()
    if problems:
        name, problem = next(iter(problems.items()))
        raise ValueError(f"{name}: {problem}")
