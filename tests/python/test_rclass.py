"""Classes whose methods are foreign functions (R's, here stood in for by
Python functions taking `(*args, **kwargs)`, as R functions look to Python)."""

import gc
import inspect

import numpy as np
import pytest

import keras
from kerasbackup import rclass


def recording(result=None):
    """A stand-in for an R function: records how it was called."""
    calls = []

    def fn(*args, **kwargs):
        calls.append((args, kwargs))
        return result

    fn.calls = calls
    return fn


def test_wrapped_function_has_the_given_signature():
    fn = recording()
    wrapped = rclass.wrap_function("call", fn, [
        ["self", "positional"],
        ["inputs", "positional"],
        ["training", "positional", None],
        ["args", "var_positional"],
        ["mask", "keyword_only", None],
        ["kwargs", "var_keyword"],
    ])
    assert wrapped.__name__ == "call"
    assert str(inspect.signature(wrapped)) == (
        "(self, inputs, training=None, *args, mask=None, **kwargs)")
    spec = inspect.getfullargspec(wrapped)
    assert spec.args == ["self", "inputs", "training"]
    assert (spec.varargs, spec.varkw) == ("args", "kwargs")


def test_defaults_not_given_are_left_to_r():
    fn = recording("out")
    wrapped = rclass.wrap_function("m", fn, [
        ["self", "positional"],
        ["a", "positional"],
        ["b", "positional", rclass.R_DEFAULT],
        ["c", "positional", 3.0],
    ])
    assert wrapped("S", 1) == "out"
    assert fn.calls[-1] == (("S",), {"a": 1})
    # Given explicitly, even equal to the default, a value is passed on.
    wrapped("S", 1, c=3.5, b=2)
    assert fn.calls[-1] == (("S",), {"a": 1, "b": 2, "c": 3.5})
    wrapped("S", 1, 2, 4)
    assert fn.calls[-1] == (("S",), {"a": 1, "b": 2, "c": 4})


def test_extra_positional_and_keyword_arguments_reach_r_dots():
    fn = recording()
    wrapped = rclass.wrap_function("m", fn, [
        ["self", "positional"],
        ["x", "positional"],
        ["args", "var_positional"],
        ["kwargs", "var_keyword"],
    ])
    wrapped("S", 1, 2, 3, flag=True)
    assert fn.calls[-1] == (("S", 2, 3), {"x": 1, "flag": True})


def test_a_required_argument_after_a_default_stays_missing():
    fn = recording()
    wrapped = rclass.wrap_function("m", fn, [
        ["self", "positional"],
        ["a", "positional", 1.0],
        ["b", "positional"],
    ])
    wrapped("S")
    assert fn.calls[-1] == (("S",), {})
    wrapped("S", b=5)
    assert fn.calls[-1] == (("S",), {"b": 5})


def test_names_python_cannot_spell_fall_back_to_pass_through():
    fn = recording()
    wrapped = rclass.wrap_function("m", fn, [
        ["self", "positional"],
        ["input.shape", "positional"],
    ])
    assert str(inspect.signature(wrapped)) == "(self, *args, **kwargs)"
    wrapped("S", 1, z=2)
    assert fn.calls[-1] == (("S", 1), {"z": 2})


def test_returns_false_gives_none():
    wrapped = rclass.wrap_function(
        "__init__", recording("not none"), [["self", "positional"]],
        returns=False)
    assert wrapped("S") is None


def test_index_hooks_are_one_based_and_merge_returned_logs():
    fn = recording({"extra": 1.0})
    hook = rclass.wrap_index_hook("on_epoch_end", fn)
    logs = {"loss": np.float32(0.5)}
    assert hook("S", 0, logs) is None
    args, _ = fn.calls[-1]
    assert args[:2] == ("S", 1)
    assert args[2] == {"loss": 0.5} and type(args[2]["loss"]) is float
    assert logs["extra"] == 1.0
    hook("S", 4)  # logs omitted
    assert fn.calls[-1][0] == ("S", 5, {})

    logs_fn = recording()
    rclass.wrap_logs_hook("on_train_end", logs_fn)("S", logs=None)
    assert logs_fn.calls[-1] == (("S", {}), {})


def test_a_keras_layer_from_wrapped_functions():
    # Keras' Operation.__new__ binds __init__'s arguments and Layer reads
    # call()'s: an R-backed class fails here without real signatures.
    def init(self, units=2, **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)
        self.units = int(units)

    def call(self, inputs, training=None):
        return inputs * (2.0 if training else 1.0)

    def as_r(fn):  # what an R function looks like from Python
        return lambda *args, **kwargs: fn(*args, **kwargs)

    members = {
        "__init__": rclass.wrap_function("__init__", as_r(init), [
            ["self", "positional"], ["units", "positional", 2.0],
            ["kwargs", "var_keyword"]], returns=False),
        "call": rclass.wrap_function("call", as_r(call), [
            ["self", "positional"], ["inputs", "positional"],
            ["training", "positional", None]]),
    }
    cls = rclass.new_class("Doubler", [keras.layers.Layer], members, "<r>")
    layer = cls(units=3, name="d")
    assert layer.units == 3
    assert layer._call_has_training_arg
    assert layer.get_config()["units"] == 3
    x = np.ones((1, 2), "float32")
    assert float(layer(x, training=True)[0, 0]) == 2.0
    assert float(layer(x)[0, 0]) == 1.0
    assert type(layer).__module__ == "<r>"


def test_instance_keys_are_unique_and_reported_when_collected():
    class Plain:
        pass

    rclass.take_dead_keys()
    a, b = Plain(), Plain()
    ka, kb = rclass.instance_key(a), rclass.instance_key(b)
    assert ka != kb
    assert rclass.instance_key(a) == ka
    del a
    gc.collect()
    assert rclass.take_dead_keys() == [ka]
    assert rclass.take_dead_keys() == []
    import copy

    assert rclass.instance_key(copy.copy(b)) not in (ka, kb)


def test_builtin_super_and_decorators():
    class Base:
        def hello(self):
            return "base"

    cls = rclass.new_class("Child", [Base], {
        "hello": rclass.wrap_function(
            "hello", lambda self: "child", [["self", "positional"]]),
        "size": rclass.as_property(rclass.wrap_function(
            "size", lambda self: 7, [["self", "positional"]])),
        "make": rclass.as_classmethod(rclass.wrap_function(
            "make", lambda cls: cls(), [["cls", "positional"]])),
    }, "<r>")
    obj = cls.make()
    assert obj.hello() == "child"
    assert rclass.builtin_super(cls, obj).hello() == "base"
    assert obj.size == 7
    with pytest.raises(AttributeError):
        obj.size = 3
