"""Convert the MSD_musicnn TF-1 checkpoint to safetensors and record reference outputs.

Run in a separate environment that has TensorFlow (never a genretag dependency)::

    python -m venv tfvenv && tfvenv/bin/pip install tensorflow-cpu==2.21.0 safetensors
    pip download --no-deps musicnn==0.1.0 && unzip musicnn-0.1.0-py3-none-any.whl -d musicnn_pkg
    tfvenv/bin/python tools/convert_musicnn.py musicnn_pkg/musicnn/MSD_musicnn \
        --out weights/musicnn_msd_backbone.safetensors \
        --reference tests/fixtures/musicnn_reference.npz

Outputs
-------
* the backbone weights, named and laid out for :class:`genretag.musicnn.Musicnn`;
* a fixture with fixed input patches and the original graph's 50 sigmoid outputs,
  so ``tests/test_port.py`` proves the port without TensorFlow.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

# TF layer name -> torch module prefix, in the order the original code builds them.
CONV_MAP = {
    "conv2d": "timbral.0.conv", "conv2d_1": "timbral.1.conv",
    "conv2d_2": "temporal.0.conv", "conv2d_3": "temporal.1.conv", "conv2d_4": "temporal.2.conv",
    "conv2d_5": "mid.0.conv", "conv2d_6": "mid.1.conv", "conv2d_7": "mid.2.conv",
}
BN_MAP = {
    "batch_normalization": "input_bn",
    "batch_normalization_1": "timbral.0.bn", "batch_normalization_2": "timbral.1.bn",
    "batch_normalization_3": "temporal.0.bn", "batch_normalization_4": "temporal.1.bn",
    "batch_normalization_5": "temporal.2.bn",
    "batch_normalization_6": "mid.0.bn", "batch_normalization_7": "mid.1.bn",
    "batch_normalization_8": "mid.2.bn",
    "batch_normalization_9": "pool_bn", "batch_normalization_10": "dense_bn",
}
DENSE_MAP = {"dense": "dense", "dense_1": "tags"}
MID_CONVS = {"conv2d_5", "conv2d_6", "conv2d_7"}


def convert(reader) -> dict[str, np.ndarray]:
    """Map checkpoint variables to torch names and layouts."""
    out: dict[str, np.ndarray] = {}
    for tf_name, prefix in CONV_MAP.items():
        kernel = reader.get_tensor(f"{tf_name}/kernel")  # [kh, kw, in, out]
        if tf_name in MID_CONVS:  # conv over (time, all channels) == Conv1d
            weight = kernel[:, :, 0, :].transpose(2, 1, 0)  # [out, in, k]
        else:
            weight = kernel.transpose(3, 2, 0, 1)  # [out, in, kh, kw]
        out[f"{prefix}.weight"] = weight
        out[f"{prefix}.bias"] = reader.get_tensor(f"{tf_name}/bias")
    for tf_name, prefix in BN_MAP.items():
        out[f"{prefix}.weight"] = reader.get_tensor(f"{tf_name}/gamma")
        out[f"{prefix}.bias"] = reader.get_tensor(f"{tf_name}/beta")
        out[f"{prefix}.running_mean"] = reader.get_tensor(f"{tf_name}/moving_mean")
        out[f"{prefix}.running_var"] = reader.get_tensor(f"{tf_name}/moving_variance")
    for tf_name, prefix in DENSE_MAP.items():
        out[f"{prefix}.weight"] = reader.get_tensor(f"{tf_name}/kernel").T
        out[f"{prefix}.bias"] = reader.get_tensor(f"{tf_name}/bias")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def reference_inputs(seed: int = 20191104) -> np.ndarray:
    """Fixed test patches ``[4, 187, 96]`` in the range of ``log10(1 + 10000 mel)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(187)[:, None]
    f = np.arange(96)[None, :]
    tonal = 2.0 + 1.5 * np.sin(2 * np.pi * t / 23.0) * np.exp(-f / 40.0)
    pulses = 3.0 * (t % 16 < 2) * np.exp(-f / 10.0) + 0.5
    noise = rng.uniform(0.0, 4.0, size=(187, 96))
    smooth = np.clip(rng.normal(1.5, 0.7, size=(187, 96)), 0, None)
    return np.stack([tonal, pulses, noise, smooth]).astype(np.float32)


def run_original_graph(ckpt_dir: str, patches: np.ndarray) -> np.ndarray:
    """Run the original forward graph (up to ``model/Sigmoid``) on ``patches``."""
    import tensorflow as tf
    from tensorflow.python.framework import graph_util

    from tensorflow.core.protobuf import meta_graph_pb2

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    meta_graph = meta_graph_pb2.MetaGraphDef()
    with open(os.path.join(ckpt_dir, ".meta"), "rb") as fh:
        meta_graph.ParseFromString(fh.read())
    # The whole graph does not import (gradient nodes); the forward part does.
    forward = graph_util.extract_sub_graph(meta_graph.graph_def, ["model/Sigmoid"])
    for node in forward.node:
        node.attr.pop("_output_shapes", None)
    reader = tf1.train.NewCheckpointReader(ckpt_dir + "/")
    graph = tf1.Graph()
    with graph.as_default():
        tf1.import_graph_def(forward, name="")
        sess = tf1.Session(graph=graph)
        for node in forward.node:
            if node.op == "VariableV2":
                var = graph.get_tensor_by_name(node.name + ":0")
                sess.run(tf1.assign(var, reader.get_tensor(node.name)))
        feed = {"model/Placeholder:0": patches, "model/Placeholder_2:0": False}
        return sess.run("model/Sigmoid:0", feed_dict=feed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt_dir", help="the MSD_musicnn folder of the musicnn 0.1.0 wheel")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reference", required=True)
    args = ap.parse_args()

    import tensorflow as tf
    from safetensors.numpy import save_file

    reader = tf.compat.v1.train.NewCheckpointReader(args.ckpt_dir + "/")
    save_file(convert(reader), args.out, metadata={"source": "musicnn 0.1.0 MSD_musicnn (ISC)"})
    patches = reference_inputs()
    tags = run_original_graph(args.ckpt_dir, patches)
    np.savez_compressed(args.reference, patches=patches, tags=tags.astype(np.float32))
    print(f"wrote {args.out} and {args.reference}: tags {tags.shape}")


if __name__ == "__main__":
    main()
