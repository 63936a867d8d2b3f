#!/usr/bin/env python3
"""Writes kerasbackup's R wrappers from the installed Keras.

Walks the public Keras API (layers, ops, activations, losses, metrics,
optimizers and schedules, initializers, regularizers, constraints,
callbacks, random, config, applications, datasets and a set of utilities),
reads each endpoint's signature, maps it to keras3's R name and argument
conventions, and writes one R file per family with a roxygen block per
wrapper. Help text is generated from the signature only.

It also writes tools/keras-endpoints.tsv: one fingerprint per wrapped
endpoint (signature and a hash of its docstring), so a Keras upgrade shows
up as a diff. `--out DIR` writes into DIR instead of the repository (the
regeneration test compares the two).

Run:  make wrappers     (this script, then roxygen2::roxygenise())
"""

import argparse
import hashlib
import importlib
import inspect
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wrapper_rules as rules  # noqa: E402

GENERATOR = "tools/generate-wrappers.py"
KERAS_VERSION = keras.__version__


# ---------------------------------------------------------------- endpoints

class Endpoint:
    """One Python object to wrap, with its R name and how to call it."""

    def __init__(self, path, obj, r_name, kind, family, file, **extra):
        self.path = path            # public dotted path, e.g. "layers.Conv2D"
        self.obj = obj
        self.r_name = r_name
        self.kind = kind            # call, layer, merge, cell, loss, application, dataset
        self.family = family        # roxygen @family, e.g. "convolutional layers"
        self.file = file            # R file name, e.g. "layers-convolutional.R"
        self.fn_path = extra.get("fn_path")    # function form of a loss/metric
        self.fn_obj = extra.get("fn_obj")
        self.module = extra.get("module")      # applications' module
        self.aliases = extra.get("aliases", [])
        self.helper = extra.get("helper")


def public_names(module):
    return sorted(n for n in dir(module) if not n.startswith("_"))


def canonical(module, names, prefer=None):
    """Groups public names by object identity; returns {name: [aliases]}."""
    groups = {}
    for name in names:
        obj = getattr(module, name)
        groups.setdefault(id(obj), []).append(name)
    out = {}
    for members in groups.values():
        obj = getattr(module, members[0])
        pick = None
        if prefer:
            pick = prefer(members, obj)
        if pick is None:
            own = getattr(obj, "__name__", None)
            pick = own if own in members else sorted(members, key=len)[0]
        out[pick] = sorted(m for m in members if m != pick)
    return out


def submodule_of(obj, prefix):
    """'keras.src.layers.convolutional.conv2d' -> 'convolutional' (prefix 'keras.src.layers')."""
    mod = getattr(obj, "__module__", "") or ""
    if mod.startswith(prefix + "."):
        return mod[len(prefix) + 1:].split(".")[0]
    return None


def collect():
    eps = []
    eps += collect_layers()
    eps += collect_ops()
    eps += collect_simple("activations", "activation_", "activations", "activations.R",
                          skip={"get", "serialize", "deserialize"})
    eps += collect_losses_metrics("losses", "loss_", "losses", "losses.R", keras.losses.Loss)
    eps += collect_losses_metrics("metrics", "metric_", "metrics", "metrics.R", keras.metrics.Metric)
    eps += collect_classes("optimizers", keras.optimizers.Optimizer, "optimizer_", "optimizers",
                           "optimizers.R", skip={"Optimizer"})
    eps += collect_classes("optimizers.schedules", keras.optimizers.schedules.LearningRateSchedule,
                           "learning_rate_schedule_", "learning rate schedules",
                           "optimizers-schedules.R", skip={"LearningRateSchedule"})
    eps += collect_classes("initializers", keras.initializers.Initializer, "initializer_",
                           "initializers", "initializers.R", skip={"Initializer"})
    eps += collect_classes("regularizers", keras.regularizers.Regularizer, "regularizer_",
                           "regularizers", "regularizers.R", skip={"Regularizer"})
    eps += collect_classes("constraints", keras.constraints.Constraint, "constraint_",
                           "constraints", "constraints.R", skip={"Constraint"})
    eps += collect_classes("callbacks", keras.callbacks.Callback, "callback_", "callbacks",
                           "callbacks.R", skip=set(rules.SKIP_CALLBACKS))
    eps += collect_simple("random", "random_", "random", "random.R", skip=set())
    eps += collect_simple("config", "config_", "config", "config.R", skip=set())
    eps += collect_applications()
    eps += collect_utils()
    eps += collect_datasets()
    eps += collect_feature_space()
    for ep in eps:
        ep.aliases = sorted(set(ep.aliases) | set(rules.R_ALIASES.get(ep.r_name, [])))
    names = [e.r_name for e in eps] + [a for e in eps for a in e.aliases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemExit(f"R names generated twice: {dupes}")
    return eps


def collect_layers():
    mod = keras.layers
    names = [n for n in public_names(mod)
             if inspect.isclass(getattr(mod, n)) and issubclass(getattr(mod, n), keras.layers.Layer)
             and n not in rules.SKIP_LAYERS]
    eps = []
    for name, aliases in canonical(mod, names).items():
        obj = getattr(mod, name)
        group = submodule_of(obj, "keras.src.layers") or "backend_wrappers"
        group = rules.LAYER_GROUP_OVERRIDES.get(name, group)
        if group not in rules.LAYER_FAMILIES:
            group = "backend_wrappers"
        family, file = rules.LAYER_FAMILIES[group]
        if name in rules.RNN_CELLS:
            r_name, kind = rules.RNN_CELLS[name], "cell"
        else:
            r_name = rules.LAYER_NAMES.get(name) or "layer_" + rules.snake_layer(name)
            kind = "merge" if group == "merging" else "layer"
        eps.append(Endpoint("layers." + name, obj, r_name, kind, family, file,
                            aliases=rules.R_ALIASES.get(r_name, [])))
    return eps


def collect_ops():
    mod = keras.ops
    eps = []
    funcs = [n for n in public_names(mod)
             if callable(getattr(mod, n)) and not inspect.ismodule(getattr(mod, n))
             and not inspect.isclass(getattr(mod, n)) and n not in rules.SKIP_OPS]
    for name, aliases in canonical(mod, funcs).items():
        obj = getattr(mod, name)
        group = submodule_of(obj, "keras.src.ops") or "core"
        family, file = rules.OP_FAMILIES.get(group, rules.OP_FAMILIES["core"])
        eps.append(Endpoint("ops." + name, obj, "op_" + name, "call", family, file,
                            aliases=["op_" + a for a in aliases],
                            helper=rules.HELPERS.get("ops." + name)))
    top = {id(getattr(mod, n)) for n in funcs}
    img = keras.ops.image
    for name in public_names(img):
        obj = getattr(img, name)
        if not callable(obj) or id(obj) in top:
            continue
        family, file = rules.OP_FAMILIES["image"]
        r_name = rules.OP_IMAGE_NAMES.get(name, "op_image_" + name)
        eps.append(Endpoint("ops.image." + name, obj, r_name, "call", family, file))
    return eps


def collect_simple(modname, prefix, family, file, skip):
    mod = importlib.import_module("keras." + modname)
    eps = []
    funcs = [n for n in public_names(mod) if callable(getattr(mod, n)) and n not in skip
             and not inspect.ismodule(getattr(mod, n))]
    for name, aliases in canonical(mod, funcs).items():
        obj = getattr(mod, name)
        r_name = rules.SIMPLE_NAMES.get(f"{modname}.{name}") or prefix + rules.snake(name)
        eps.append(Endpoint(f"{modname}.{name}", obj, r_name, "call", family, file,
                            aliases=[prefix + rules.snake(a) for a in aliases]))
    return eps


def collect_classes(modname, base, prefix, family, file, skip):
    mod = importlib.import_module("keras." + modname)
    names = [n for n in public_names(mod)
             if inspect.isclass(getattr(mod, n)) and issubclass(getattr(mod, n), base)
             and n not in skip]
    eps = []
    for name, _aliases in canonical(mod, names, prefer=rules.prefer_short_camel).items():
        key = f"{modname}.{name}"
        r_name = rules.CLASS_NAMES.get(key) or prefix + rules.snake(name)
        eps.append(Endpoint(key, getattr(mod, name), r_name, "call", family, file,
                            aliases=rules.R_ALIASES.get(r_name, [])))
    return eps


def collect_losses_metrics(modname, prefix, family, file, base):
    mod = importlib.import_module("keras." + modname)
    classes = [n for n in public_names(mod)
               if inspect.isclass(getattr(mod, n)) and issubclass(getattr(mod, n), base)
               and n not in {"Loss", "Metric"}]
    funcs = [n for n in public_names(mod)
             if inspect.isfunction(getattr(mod, n)) and n not in {"get", "serialize", "deserialize"}]
    pairs = rules.LOSS_METRIC_PAIRS.get(modname, {})
    eps, used = [], set()
    for cls in classes:
        fn = pairs.get(cls, rules.snake(cls))
        key = f"{modname}.{cls}"
        r_name = rules.CLASS_NAMES.get(key) or prefix + rules.snake(cls)
        if fn in funcs:
            used.add(fn)
            eps.append(Endpoint(key, getattr(mod, cls), r_name, "loss", family, file,
                                fn_path=f"{modname}.{fn}", fn_obj=getattr(mod, fn)))
        else:
            eps.append(Endpoint(key, getattr(mod, cls), r_name, "call", family, file))
    for fn in funcs:
        if fn not in used:
            eps.append(Endpoint(f"{modname}.{fn}", getattr(mod, fn), prefix + fn, "call",
                                family, file))
    return eps


def collect_applications():
    mod = keras.applications
    eps = []
    modules = {}
    for sub in public_names(mod):
        subobj = getattr(mod, sub)
        if inspect.ismodule(subobj) and sub != "imagenet_utils":
            for n in public_names(subobj):
                modules.setdefault(id(getattr(subobj, n)), sub)
    for name in public_names(mod):
        obj = getattr(mod, name)
        if inspect.ismodule(obj):
            continue
        r_name = rules.APPLICATION_NAMES.get(name) or "application_" + rules.snake_application(name)
        module = modules.get(id(obj)) or obj.__module__.split(".")[-1]
        if not inspect.ismodule(getattr(mod, module, None)):
            raise SystemExit(f"no keras.applications module for {name}")
        eps.append(Endpoint("applications." + name, obj, r_name, "application", "applications",
                            "applications.R", module=module,
                            aliases=rules.R_ALIASES.get(r_name, [])))
    for name in ("preprocess_input", "decode_predictions"):
        path = "applications.imagenet_utils." + name
        eps.append(Endpoint(path, getattr(mod.imagenet_utils, name), "imagenet_" + name, "call",
                            "applications", "applications.R", helper=rules.HELPERS.get(path)))
    return eps


def collect_utils():
    eps = []
    for path, (r_name, family, file) in sorted(rules.UTILS.items()):
        obj = keras
        for part in path.split("."):
            obj = getattr(obj, part)
        eps.append(Endpoint(path, obj, r_name, "call", family, file,
                            helper=rules.HELPERS.get(path)))
    return eps


def collect_datasets():
    eps = []
    for name in public_names(keras.datasets):
        sub = getattr(keras.datasets, name)
        eps.append(Endpoint(f"datasets.{name}.load_data", sub.load_data, "dataset_" + name,
                            "dataset", "datasets", "datasets.R"))
        if hasattr(sub, "get_word_index"):
            eps.append(Endpoint(f"datasets.{name}.get_word_index", sub.get_word_index,
                                f"dataset_{name}_word_index", "call", "datasets", "datasets.R",
                                helper=rules.HELPERS.get(f"datasets.{name}.get_word_index")))
    return eps


def collect_feature_space():
    cls = keras.utils.FeatureSpace
    eps = [Endpoint("utils.FeatureSpace", cls, "layer_feature_space", "layer",
                    "preprocessing layers", "layers-preprocessing.R")]
    for name in public_names(cls):
        if isinstance(inspect.getattr_static(cls, name), classmethod) and name not in (
                "from_config",):
            eps.append(Endpoint(f"utils.FeatureSpace.{name}", getattr(cls, name),
                                rules.FEATURE_NAMES.get(name, "feature_" + name), "call",
                                "feature space", "feature-space.R"))
    return eps


# ---------------------------------------------------------------- signatures

class Arg:
    def __init__(self, name, default, kind, converter, doc, r_name=None):
        self.name = name
        self.r_name = r_name or name   # the R formal (differs for renamed arguments)
        self.default = default      # R source text, or None for no default
        self.kind = kind            # "param", "dots"
        self.converter = converter
        self.doc = doc


def signature_of(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(target)
    params = list(sig.parameters.values())
    if inspect.isclass(obj) and params and params[0].name == "self":
        params = params[1:]
    return params


def docstring_args(doc):
    """First line of each argument's description in a Google-style docstring."""
    out = {}
    if not doc:
        return out
    lines = doc.splitlines()
    start = next((i for i, l in enumerate(lines)
                  if re.match(r"^\s*(Args|Arguments):\s*$", l)), None)
    if start is None:
        return out
    base, cur = None, None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if base is None:
            base = indent
        if indent < base:
            break
        if indent == base:
            m = re.match(r"^\s*\**([A-Za-z_]\w*)\s*(\([^)]*\))?\s*:\s*(.*)$", line)
            if not m:
                break
            cur = m.group(1)
            out[cur] = m.group(3)
        elif cur:
            out[cur] += " " + line.strip()
    return out


def int_hint(desc):
    """'int', 'int_tuple' or None, from the start of an argument's description."""
    if not desc:
        return None
    head = re.split(r"[.;]\s", desc, maxsplit=1)[0].lower()
    head = re.sub(r"^\(optional\)\s*", "", head)
    if re.match(r"^(an? )?(tuple|list)( or list| or tuple)? of (\d+ )?(int|integer)s?\b", head):
        return "int_tuple"
    if not re.match(r"^(an? |the )?(positive |non-negative |strictly positive |optional |python |"
                    r"single |unsigned )*(int|integer)s?\b", head):
        return None
    if re.search(r"\b(float|real|double)\b", head):
        return None
    if re.search(r"\b(tuple|list)\b", head):
        return "int_tuple"
    return "int"


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def converter_for(ep, name, default, doc_hint):
    """The R converter (a function name) for one argument, or None."""
    key = f"{ep.path}:{name}"
    if key in rules.ARG_CONVERTERS:
        return rules.ARG_CONVERTERS[key]
    if name in rules.AXIS_ARGS:
        return "as_axis"
    if name in rules.SHAPE_ARGS:
        return "as_shape"
    if name in rules.PATH_ARGS:
        return "as_path"
    if name in rules.INT_TUPLE_ARGS or doc_hint == "int_tuple":
        return "as_integer_tuple"
    if name in rules.INT_ARGS or doc_hint == "int":
        return "as_integer"
    if isinstance(default, tuple) and default and all(is_int(v) for v in default):
        return "as_integer_tuple"
    if is_int(default):
        return "as_integer_if_whole"
    if name in rules.DATA_ARGS:
        return "as_py_array"
    return None


def r_default(value, converter):
    """R source for a Python default, or None when it has no R spelling."""
    if value is inspect.Parameter.empty:
        return None
    if converter == "as_axis" and is_int(value):
        return f"{value + 1 if value >= 0 else value}L"
    if converter == "as_axis" and isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        return "list(" + ", ".join(f"{v + 1 if v >= 0 else v}L" for v in value) + ")"
    return r_literal(value)


def r_literal(value):
    if value is None:
        return "NULL"
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if is_int(value):
        return f"{value}L" if abs(value) < 2**31 else repr(float(value))
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Inf" if value > 0 else "-Inf"
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (tuple, list)):
        items = [r_literal(v) for v in value]
        if any(i is None for i in items):
            return None
        return "list(" + ", ".join(items) + ")"
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.isidentifier() for k in value):
            return None
        items = [(k, r_literal(v)) for k, v in value.items()]
        if any(v is None for _, v in items):
            return None
        return "list(" + ", ".join(f"{k} = {v}" for k, v in items) + ")"
    return None


R_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE",
              "FALSE", "NULL", "Inf", "NaN", "NA", "in"}


def r_sym(name):
    return f"`{name}`" if name in R_RESERVED else name


def build_args(ep):
    """R formals (in order) and the names to pass positionally."""
    params = signature_of(ep.obj)
    doc = inspect.getdoc(ep.obj) or ""
    if inspect.isclass(ep.obj):
        doc += "\n" + (inspect.getdoc(ep.obj.__init__) or "")
    hints = {k: int_hint(v) for k, v in docstring_args(doc).items()}
    fn_params = []
    if ep.fn_obj is not None:
        fn_params = signature_of(ep.fn_obj)
        for k, v in docstring_args(inspect.getdoc(ep.fn_obj)).items():
            hints.setdefault(k, int_hint(v))
    args, positional, seen = [], [], set()
    dots = False

    def add(p):
        nonlocal dots
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if not dots:
                args.append(Arg("...", None, "dots", None, None))
                dots = True
            return
        if p.name in seen:
            return
        seen.add(p.name)
        conv = converter_for(ep, p.name, p.default, hints.get(p.name))
        default = rules.ARG_DEFAULTS.get(f"{ep.path}:{p.name}") or r_default(p.default, conv)
        r_name = rules.ARG_RENAMES.get(f"{ep.path}:{p.name}")
        args.append(Arg(p.name, default, "param", conv, p.default, r_name))

    if ep.kind == "loss":
        # y_true, y_pred, then the function's other arguments, then the class's.
        for p in fn_params:
            add(p)
        for p in params:
            add(p)
    else:
        for i, p in enumerate(params):
            if p.kind == p.VAR_POSITIONAL:
                positional = [q.name for q in params[:i] if q.kind != q.VAR_KEYWORD]
            elif p.kind == p.POSITIONAL_ONLY:
                positional.append(p.name)
            add(p)
    order = rules.ARG_ORDER.get(ep.path)
    if order:
        args.sort(key=lambda a: order.index(a.name) if a.name in order else len(order))
    for name, default in rules.R_ONLY_ARGS.get(ep.path, []):
        args.append(Arg(name, default, "param", None, None))
    if ep.path in rules.INDEXED:
        args.append(Arg("zero_indexed", "FALSE", "param", None, False))
    if ep.kind in ("layer", "merge") and not dots:
        args.append(Arg("...", None, "dots", None, None))
    # `...` goes last unless Python takes *args (then what follows is keyword-only).
    has_var_pos = any(p.kind == p.VAR_POSITIONAL for p in params)
    if ep.kind == "merge" or not has_var_pos:
        d = [a for a in args if a.kind == "dots"]
        args = [a for a in args if a.kind != "dots"] + d
        if ep.kind == "merge":
            # merge layers: inputs, ..., then the options (keras3's order)
            args = [a for a in args if a.kind == "dots"] + [a for a in args if a.kind != "dots"]
    return args, positional


# ---------------------------------------------------------------- R code

def r_call_body(ep, args):
    """The wrapper's body: one call of a helper, wrapped at 80 columns."""
    convs = [(a.r_name, a.converter) for a in args if a.converter]
    if ep.kind == "loss":
        convs = [(n, c) for n, c in convs if n not in ("y_true", "y_pred")]
    helper = ep.helper or {"call": "keras_call", "cell": "keras_call", "layer": "keras_layer",
                           "merge": "keras_merge_layer", "loss": "keras_loss",
                           "application": "keras_application",
                           "dataset": "keras_dataset"}[ep.kind]
    head = [f'"{ep.path}"']
    if ep.path in rules.INDEXED:
        helper = "keras_call_indexed"
        convs = [(n, c) for n, c in convs if n != "zero_indexed"]
    if ep.kind == "loss":
        head.append(f'"{ep.fn_path}"')
    if ep.kind == "application":
        head.append(f'"{ep.module}"')
    items = [f"{r_sym(n)} = {c}" for n, c in convs]
    tail = []
    renames = [(a.r_name, a.name) for a in args if a.r_name != a.name]
    if renames:
        tail.append("rename = c(" + ", ".join(f'{r} = "{p}"' for r, p in renames) + ")")
    if ep.positional:
        tail.insert(0, "c(" + ", ".join(f'"{p}"' for p in ep.positional) + ")")
    if ep.path in rules.INDEXED:
        index_args, index_result = rules.INDEXED[ep.path]
        if index_args:
            tail.append("index_args = c(" + ", ".join(f'"{a}"' for a in index_args) + ")")
        zero_passes = rules.INDEX_ZERO_PASSES.get(ep.path)
        if zero_passes:
            tail.append("zero_passes = c(" + ", ".join(f'"{a}"' for a in zero_passes) + ")")
        if index_result == "all":
            tail.append("index_result = TRUE")
        elif index_result:
            tail.append(f"index_result = {index_result}L")
    conv = "list(" + ", ".join(items) + ")" if items else ("list()" if tail else None)
    one = f"  {helper}(" + ", ".join(head + ([conv] if conv else []) + tail) + ")"
    if len(one) <= 80:
        return one
    lines = [f"  {helper}(" + ", ".join(head) + ", list("]
    cur = "   "
    for i, item in enumerate(items):
        piece = " " + item + ("," if i < len(items) - 1 else "")
        if len(cur) + len(piece) > 80:
            lines.append(cur)
            cur = "   "
        cur += piece
    lines.append(cur)
    lines.append("  )" + "".join(", " + t for t in tail) + ")")
    return "\n".join(lines)


def r_formals(ep, args):
    out = []
    if ep.kind == "layer":
        out.append("object")
    if ep.kind == "merge":
        out.append("inputs")
    for a in args:
        if a.kind == "dots":
            out.append("...")
        elif a.default is None:
            out.append(r_sym(a.r_name))
        else:
            out.append(f"{r_sym(a.r_name)} = {a.default}")
    return out


def wrap_formals(name, formals, width=80):
    head = f"{name} <- function("
    lines, cur = [], head
    for i, f in enumerate(formals):
        piece = f + (", " if i < len(formals) - 1 else ")")
        if len(cur) + len(piece.rstrip()) > width and cur.strip() != head.strip():
            lines.append(cur.rstrip())
            cur = " " * 4 + piece
        else:
            cur += piece
    if not formals:
        cur += ")"
    lines.append(cur.rstrip())
    return "\n".join(lines)


def r_expr_of_path(path):
    return 'reticulate::import("keras")$' + "$".join(path.split("."))


def roxygen(ep, args):
    lines = [f"#' {rules.title(ep)}", "#'"]
    lines += [f"#' {l}" if l else "#'" for l in rules.description(ep, KERAS_VERSION)]
    lines.append("#'")
    if ep.kind == "layer":
        lines.append(f"#' @param object {rules.OBJECT_DOC}")
    if ep.kind == "merge":
        lines.append(f"#' @param inputs {rules.INPUTS_DOC}")
    for a in args:
        if a.kind == "dots":
            lines.append(f"#' @param ... {rules.dots_doc(ep)}")
        else:
            lines.append(f"#' @param {a.r_name} {rules.param_doc(ep, a)}")
    lines.append(f"#' @returns {rules.returns(ep)}")
    lines.append(f"#' @family {ep.family}")
    py = f"keras.{ep.path}"
    extra = f"; the function form is `keras.{ep.fn_path}`" if ep.fn_path else ""
    lines.append(f"#' @seealso `{py}`{extra}. "
                 f"`reticulate::py_help({r_expr_of_path(ep.path)})` shows Keras' own "
                 "documentation at run time.")
    lines.append("#' @export")
    return lines


def render(ep):
    args, positional = build_args(ep)
    ep.positional = positional
    ep.args = args
    out = roxygen(ep, args)
    out.append(wrap_formals(ep.r_name, r_formals(ep, args)) + " {")
    out.append(r_call_body(ep, args))
    out.append("}")
    for alias in ep.aliases:
        out += ["", f"#' @rdname {ep.r_name}", "#' @export", f"{alias} <- {ep.r_name}"]
    return "\n".join(out) + "\n"


def header(file):
    return (f"# Generated by {GENERATOR} from Keras {KERAS_VERSION}: do not edit by hand.\n"
            f"# Regenerate with `make wrappers` (see {GENERATOR}).\n")


# ---------------------------------------------------------------- fingerprints

def clean_repr(text):
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def fingerprint(ep):
    objs = [ep.obj] + ([ep.fn_obj] if ep.fn_obj is not None else [])
    sigs, docs = [], []
    for obj in objs:
        target = obj.__init__ if inspect.isclass(obj) else obj
        sigs.append(clean_repr(str(inspect.signature(target))))
        docs.append(inspect.getdoc(obj) or "")
    digest = hashlib.sha256("\n\0\n".join(docs).encode()).hexdigest()[:16]
    return f"keras.{ep.path}\t{ep.r_name}\t{' | '.join(sigs)}\t{digest}"


# ---------------------------------------------------------------- main

def generate(out_dir):
    eps = collect()
    files = {}
    for ep in sorted(eps, key=lambda e: (e.file, e.r_name)):
        files.setdefault(ep.file, []).append(render(ep))
    written = []
    for file, chunks in sorted(files.items()):
        path = Path(out_dir) / "R" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header(file) + "\n" + "\n".join(chunks))
        written.append(path)
    tether = Path(out_dir) / "tools" / "keras-endpoints.tsv"
    tether.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(fingerprint(ep) for ep in eps)
    tether.write_text(f"# keras {KERAS_VERSION}: python path, R name, signature, docstring sha256[:16]\n"
                      + "\n".join(rows) + "\n")
    written.append(tether)
    return eps, written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent),
                        help="directory to write R/ and tools/ into (default: the repository)")
    opts = parser.parse_args()
    eps, written = generate(opts.out)
    stale = []
    for path in sorted((Path(opts.out) / "R").glob("*.R")):
        if path not in written and path.read_text().startswith("# Generated by " + GENERATOR):
            stale.append(path)
            path.unlink()
    print(f"{len(eps)} endpoints, {len(written) - 1} R files written to {opts.out}/R"
          + (f"; removed {len(stale)} stale" if stale else ""))


if __name__ == "__main__":
    main()
