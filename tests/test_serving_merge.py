"""serving.merge: requests' TensorProtos decoded, checked and merged in-graph, against a
brute-force reading of each proto in numpy (TensorFlow's Tensor::FromProto rules)."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from serving import merge

SPECS = {"a": tf.TensorSpec([None], tf.float32), "b": tf.TensorSpec([None], tf.string),
         "c": tf.TensorSpec([None, 3], tf.int64), "d": tf.TensorSpec([None], tf.float32)}
NAMES = sorted(SPECS)
FIELDS = {tf.float32: "float_val", tf.int32: "int_val", tf.int64: "int64_val", tf.string: "string_val"}


def identity(**features):
    return dict(features)


RUN = merge.make_runner(identity, NAMES, [SPECS[k] for k in NAMES])


def proto(dtype, shape, values=None, content=None):
    p = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for d in shape:
        p.tensor_shape.dim.add(size=d)
    if content is not None:
        p.tensor_content = content
    elif values is not None:
        getattr(p, FIELDS[dtype]).extend(values)
    return p


def reference(p: tensor_pb2.TensorProto, spec) -> np.ndarray:
    """What TensorFlow reads from a TensorProto: tensor_content if set; else the value field,
    empty -> default values, shorter -> padded with its last value, longer -> truncated."""
    shape = [d.size for d in p.tensor_shape.dim]
    n = int(np.prod(shape))
    if spec.dtype != tf.string and p.tensor_content:
        return np.frombuffer(p.tensor_content, spec.dtype.as_numpy_dtype).reshape(shape)
    values = list(getattr(p, FIELDS[spec.dtype]))
    if not values:
        values = [b"" if spec.dtype == tf.string else 0]
    values = (values + [values[-1]] * n)[:n]
    return np.array(values, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype).reshape(shape)


def random_request(rng, n):
    """A valid request of n rows, each input in a randomly chosen TensorProto encoding."""
    req = {}
    for k in NAMES:
        spec = SPECS[k]
        shape = [n] + spec.shape.as_list()[1:]
        size = int(np.prod(shape))
        if spec.dtype == tf.string:
            full = [bytes(rng.choice(list(b"abcxyz"), rng.integers(0, 4)).tolist()) for _ in range(size)]
        else:
            full = rng.integers(-5, 50, size).astype(spec.dtype.as_numpy_dtype).tolist()
        how = rng.choice(["content", "full", "one", "short", "long", "empty"])
        if how == "content" and spec.dtype != tf.string:
            req[k] = proto(spec.dtype, shape, content=np.array(full, spec.dtype.as_numpy_dtype).tobytes())
        elif how == "one":
            req[k] = proto(spec.dtype, shape, full[:1])
        elif how == "short":
            req[k] = proto(spec.dtype, shape, full[:max(1, size // 2)])
        elif how == "long":
            req[k] = proto(spec.dtype, shape, full + full[:2])
        elif how == "empty":
            req[k] = proto(spec.dtype, shape, [])
        else:
            req[k] = proto(spec.dtype, shape, full)
    return req


def run(requests):
    ok, rows, out = RUN(tf.constant([[r[k].SerializeToString() for k in NAMES] for r in requests]))
    return ok.numpy(), rows.numpy(), {k: v.numpy() for k, v in out.items()}


def test_merged_inputs_equal_each_request_read_by_the_reference():
    rng = np.random.default_rng(0)
    requests = [random_request(rng, int(n)) for n in rng.integers(0, 6, 40)]
    ok, rows, out = run(requests)
    assert ok.all()
    assert rows.tolist() == [r["a"].tensor_shape.dim[0].size for r in requests]
    for k in NAMES:
        expected = np.concatenate([reference(r[k], SPECS[k]) for r in requests])
        assert out[k].shape == expected.shape
        assert out[k].tolist() == expected.tolist(), k


@pytest.mark.parametrize("fault", ["dtype", "rank", "inner_dim", "row_count", "content_length", "string_content"])
def test_a_bad_request_is_refused_alone(fault):
    rng = np.random.default_rng(1)
    good = [random_request(rng, 2), random_request(rng, 3)]
    bad = random_request(rng, 2)
    if fault == "dtype":
        bad["a"] = proto(tf.float64, [2], content=np.zeros(2).tobytes())
    elif fault == "rank":
        bad["a"] = proto(tf.float32, [2, 1], [1.0, 2.0])
    elif fault == "inner_dim":
        bad["c"] = proto(tf.int64, [2, 4], list(range(8)))
    elif fault == "row_count":
        bad["d"] = proto(tf.float32, [3], [1.0, 2.0, 3.0])
    elif fault == "content_length":
        bad["a"] = proto(tf.float32, [2], content=np.zeros(3, np.float32).tobytes())
    else:
        bad["b"] = proto(tf.string, [2], content=b"ab")
    ok, rows, out = run([good[0], bad, good[1]])
    assert ok.tolist() == [True, False, True]
    for k in NAMES:
        expected = np.concatenate([reference(r[k], SPECS[k]) for r in good])
        assert out[k].tolist() == expected.tolist()


def test_a_batch_of_only_bad_requests_runs_on_zero_rows():
    rng = np.random.default_rng(2)
    bad = random_request(rng, 1)
    bad["a"] = proto(tf.int32, [1], [])
    ok, _, out = run([bad])
    assert ok.tolist() == [False] and out["a"].shape == (0,) and out["c"].shape == (0, 3)


def test_inputs_it_cannot_merge_are_reported():
    assert merge.supported([tf.TensorSpec([None], tf.float32), tf.TensorSpec([None, 2], tf.string)])
    assert not merge.supported([tf.TensorSpec([None, None], tf.float32)])
    assert not merge.supported([tf.TensorSpec([], tf.float32)])
    assert not merge.supported([tf.TensorSpec(None, tf.float32)])
    assert not merge.supported([tf.TensorSpec([None], tf.float16)])
    assert not merge.supported([])


def test_a_signature_merge_cannot_handle_runs_requests_one_at_a_time(tmp_path):
    from serving import errors
    from serving.models import Signature
    module = tf.Module()
    module.f = tf.function(lambda x: {"s": tf.reduce_sum(x, axis=1)},
                           input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path), signatures=module.f.get_concrete_function())
    loaded = tf.saved_model.load(str(tmp_path))
    sig = Signature("s", loaded.signatures["serving_default"], batching={"max_batch_size": 8})
    assert sig.batcher is None  # ragged inner dimension: no merging, so no batching
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(sig.call_now({"x": tf.make_tensor_proto(x)})["s"], x.sum(axis=1))
    # from a batching server's event loop it runs on the executor's threads
    import asyncio
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        out = asyncio.run(sig.call_async({"x": tf.make_tensor_proto(x)}, pool))
    np.testing.assert_array_equal(out["s"], x.sum(axis=1))
    with pytest.raises(errors.ServingError):
        sig.call_now({"x": tf.make_tensor_proto(x.astype(np.int32))})
