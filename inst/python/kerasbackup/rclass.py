"""Python classes whose methods are R functions (R's subclassing API).

Keras reads method signatures: `Operation.__new__` binds the arguments of
`__init__` to record a config, `Layer` looks for `training` and `mask` among
the parameters of `call()` and matches `build()`'s parameter names to the
inputs, and `Model.from_config` checks for `(*args, **kwargs)`. An R function
seen from Python takes only `(*args, **kwargs)`, so each R method is wrapped
in a generated Python function with the R function's own parameters.

Nothing here imports Keras: the R side passes the base classes in.
"""

import itertools
import keyword
import types
import weakref


class _Marker:
    def __init__(self, label):
        self._label = label

    def __repr__(self):
        return f"<{self._label}>"


# Default of a parameter whose R default is an expression: left for R to
# evaluate, so the value never reaches R from Python.
R_DEFAULT = _Marker("R default")
# A required parameter after one with a default (legal in R, not in Python):
# when the caller omits it, R reports it missing.
R_REQUIRED = _Marker("required")
_NO_DEFAULT = _Marker("no default")

# Parameter kinds, as the R side describes them.
POSITIONAL = "positional"
VAR_POSITIONAL = "var_positional"
KEYWORD_ONLY = "keyword_only"
VAR_KEYWORD = "var_keyword"

# Callback hooks: their first argument is an epoch or batch index, which R
# sees 1-based, then `logs`; the others take only `logs`.
INDEX_HOOKS = frozenset({
    "on_epoch_begin", "on_epoch_end",
    "on_batch_begin", "on_batch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_test_batch_begin", "on_test_batch_end",
    "on_predict_batch_begin", "on_predict_batch_end",
})
LOGS_HOOKS = frozenset({
    "on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
    "on_predict_begin", "on_predict_end",
})


def _invoke(fn, leading, named, args, kwargs):
    # A value that is its parameter's own default object was not given by
    # the caller: R then evaluates its own default (and `missing()` holds).
    call_kwargs = {name: value for name, value, default in named
                   if value is not default}
    call_kwargs.update(kwargs)
    return fn(*leading, *args, **call_kwargs)


def _valid_name(name):
    return name.isidentifier() and not keyword.iskeyword(name)


def _signature_source(params):
    """Python parameter list and the call that forwards it, or None."""
    if not params or params[0][1] != POSITIONAL:
        return None
    names = [p[0] for p in params]
    if len(set(names)) != len(names) or not all(_valid_name(n) for n in names):
        return None
    if any(n.startswith("_kb_") for n in names):
        return None
    first = names[0]
    sig, named = [first], []
    star, starstar = "()", "{}"
    for i, (name, kind, default) in enumerate(params[1:], start=1):
        if kind == POSITIONAL:
            sig.append(name if default is _NO_DEFAULT else f"{name}=_kb_d[{i}]")
            named.append(f"({name!r}, {name}, _kb_d[{i}])")
        elif kind == VAR_POSITIONAL:
            sig.append(f"*{name}")
            star = name
        elif kind == KEYWORD_ONLY:
            if star == "()" and not any(s.startswith("*") for s in sig):
                sig.append("*")
            sig.append(name if default is _NO_DEFAULT else f"{name}=_kb_d[{i}]")
            named.append(f"({name!r}, {name}, _kb_d[{i}])")
        elif kind == VAR_KEYWORD:
            sig.append(f"**{name}")
            starstar = name
        else:
            raise ValueError(f"unknown parameter kind {kind!r} for {name!r}")
    call = (f"_kb_invoke(_kb_fn, ({first},), ({', '.join(named)}{',' if named else ''}), "
            f"{star}, {starstar})")
    return ", ".join(sig), call


def _python_params(params):
    """Normalises `[name, kind, default]` triples coming from R."""
    out, seen_default = [], False
    for name, kind, *rest in params:
        default = rest[0] if rest else _NO_DEFAULT
        if default is R_REQUIRED:
            default = _NO_DEFAULT
        if kind == POSITIONAL:
            if default is not _NO_DEFAULT:
                seen_default = True
            elif seen_default:
                default = R_REQUIRED
        out.append((str(name), kind, default))
    return out


def wrap_function(name, fn, params, returns=True):
    """A Python function named `name` with `params` that calls R's `fn`.

    `params` lists `[name, kind, default]` for each parameter, the first being
    `self` (or `cls`); `default` is omitted for a required parameter, or is
    `R_DEFAULT` when R should evaluate its own default. With `returns=False`
    the function returns None whatever R returns (as `__init__` must).
    """
    params = _python_params(params)
    fname = name if _valid_name(name) else "method"
    source = _signature_source(params)
    if source is None:
        # Parameter names Python cannot spell: pass everything through.
        def method(self, *args, **kwargs):
            result = fn(self, *args, **kwargs)
            return result if returns else None

        method.__name__ = method.__qualname__ = fname
        return method
    sig, call = source
    body = f"return {call}" if returns else f"{call}\n    return None"
    code = f"def {fname}({sig}):\n    {body}\n"
    namespace = {"_kb_fn": fn, "_kb_invoke": _invoke,
                 "_kb_d": [p[2] for p in params]}
    exec(compile(code, f"<R method {fname}>", "exec"), namespace)
    return namespace[fname]


def _plain_logs(logs):
    # Imported here: this module stays importable without Keras.
    from kerasbackup.state import log_values

    return log_values(logs)


def _merge_into(logs, result):
    if isinstance(result, dict) and logs is not None:
        logs.update(result)


def wrap_index_hook(name, fn):
    """A callback hook `(self, index, logs=None)` calling `fn(self, index + 1, logs)`.

    A dict the R function returns is merged into `logs`.
    """
    def hook(self, index, logs=None):
        _merge_into(logs, fn(self, int(index) + 1, _plain_logs(logs)))

    hook.__name__ = hook.__qualname__ = name
    return hook


def wrap_logs_hook(name, fn):
    """A callback hook `(self, logs=None)`; a returned dict is merged into `logs`."""
    def hook(self, logs=None):
        _merge_into(logs, fn(self, _plain_logs(logs)))

    hook.__name__ = hook.__qualname__ = name
    return hook


def as_property(getter, setter=None):
    return property(getter, setter)


def as_classmethod(fn):
    return classmethod(fn)


def as_staticmethod(fn):
    return staticmethod(fn)


def new_class(classname, bases, members, module):
    """Makes class `classname` from `bases` with `members` (a dict)."""
    namespace = dict(members)
    namespace.setdefault("__module__", module)
    return types.new_class(str(classname), tuple(bases),
                           exec_body=lambda ns: ns.update(namespace))


def builtin_super(cls, obj):
    return super(cls, obj)


# ---------------------------------------------------------------- private state

# Per-instance R state (`private`) lives in R, keyed by a number stored on the
# instance. Keys are never reused; the keys of collected instances are queued
# here (by a finalizer that does not call R) for the R side to drop.
_next_key = itertools.count(1)
_dead_keys = []
_KEY_ATTR = "_kerasbackup_r_key"


def instance_key(obj):
    """The key of `obj`'s R-side private state (a copy gets a new one)."""
    state = vars(obj)
    found = state.get(_KEY_ATTR)
    if found is not None and found[1] == id(obj):
        return found[0]
    key = next(_next_key)
    state[_KEY_ATTR] = (key, id(obj))
    weakref.finalize(obj, _dead_keys.append, key)
    return key


def take_dead_keys():
    """Returns and forgets the keys of instances collected since the last call."""
    dead = []
    while _dead_keys:
        dead.append(_dead_keys.pop())
    return dead
