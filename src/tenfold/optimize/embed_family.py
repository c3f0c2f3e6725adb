"""Variant builders for sentence-transformers embedders (the ``embed`` example).

* ``onnx-fp32``: ``torch.onnx.export`` of a wrapper doing transformer + mean pooling
  (+ L2 normalization when the model has it), with dynamic batch and sequence axes.
* ``onnx-int8``: ONNX Runtime dynamic quantization, int8 weights per channel.
* ``torch-int8``: torch dynamic int8 of every Linear (see ``serving.quantize_int8``).
* ``fp16`` / ``bf16``: the model cast to that dtype; only where the hardware computes
  in it natively (``hardware.half_precision_skip_reason``).

Tokenization stays with the HF tokenizer saved next to each ONNX file.
"""

from __future__ import annotations

import io
import logging
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenfold.examples.embed import Embed, load_sentence_transformer, model_path
from tenfold.optimize.hardware import Hardware, half_precision_skip_reason
from tenfold.optimize.serving import ONNX_FILE, ONNX_INPUTS, OnnxEmbed, TorchEmbed
from tenfold.optimize.variants import (
    Built,
    Skipped,
    VariantManifest,
    VariantName,
    tree_size_bytes,
)

log = logging.getLogger(__name__)

ONNX_OPSET = 17
TARGET_ONNX = "tenfold.optimize.serving:OnnxEmbed"
TARGET_TORCH = "tenfold.optimize.serving:TorchEmbed"


def weights_size_bytes(directory: Path) -> int:
    """Bytes of the weight files of a saved transformers/sentence-transformers directory."""
    return sum(
        p.stat().st_size
        for p in directory.rglob("*")
        if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file()
    )


def pooled_module(st: Any) -> Any:
    """A torch module ``(input_ids, attention_mask, token_type_ids) -> embedding`` that
    reproduces ``st.encode`` (mean pooling over real tokens, then L2 norm if ``st`` has it)."""
    import torch
    from sentence_transformers.models import Normalize, Pooling

    pooling = [m for m in st if isinstance(m, Pooling)]
    if len(pooling) != 1 or pooling[0].pooling_mode != "mean":
        raise ValueError("only sentence-transformers models with mean pooling can be exported")
    normalize = any(isinstance(m, Normalize) for m in st)
    transformer = st[0].auto_model

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            vectors = summed / mask.sum(dim=1).clamp(min=1e-9)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2.0, dim=1)
            return vectors

    # eval() on the wrapper itself: without it dropout stays on in the exported graph
    # (measured: cosine ~0.86 against the original).
    return Pooled().eval()


def export_onnx(st: Any, path: Path) -> None:
    """Export ``st`` to ``path`` with dynamic batch and sequence axes.

    The TorchScript exporter (``dynamo=False``) is used on purpose: on torch 2.13 the
    dynamo exporter took 42 s here (vs 3 s) and wrote a graph ONNX Runtime rejected
    ("Duplicate definition of name (embedding)"). Its deprecation and tracer warnings
    are expected and silenced.
    """
    import torch

    tokenizer = st.tokenizer
    sample = tokenizer(
        ["a short sentence", "a longer sentence to pad"], padding=True, return_tensors="pt"
    )
    args = tuple(sample[k] for k in ONNX_INPUTS)
    axes = {k: {0: "batch", 1: "sequence"} for k in ONNX_INPUTS}
    axes["embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled_module(st),
            args,
            str(path),
            input_names=list(ONNX_INPUTS),
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def quantize_onnx_int8(source: Path, dest: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a "consider pre-processing" hint through the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(dest), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


class EmbedFamily:
    """Builds and loads variants of a sentence-transformers ``Embed`` model."""

    target = "tenfold.examples.embed:Embed"
    baseline_name = "torch-fp32"

    def __init__(self, base_version: str = Embed.version, threads: int = 0) -> None:
        self.base_version = base_version
        self.threads = threads
        self._st: Any = None
        #: ONNX files this instance exported (an onnx-fp32 build), so onnx-int8 can
        #: quantize one of them rather than export again; never a file found on disk.
        self._exported: set[Path] = set()

    def _sentence_transformer(self) -> Any:
        if self._st is None:
            self._st = load_sentence_transformer("cpu")
        return self._st

    def baseline(self) -> Built:
        model = Embed()
        model.load()
        if model.model.device.type == "cpu":  # export from it rather than load a second copy
            self._st = model.model
        return Built(predict=model.predict, size_bytes=self.baseline_size_bytes())

    def baseline_size_bytes(self) -> int:
        return weights_size_bytes(Path(model_path()))

    def build(
        self, variant: VariantName, out_dir: Path, hw: Hardware, force: bool
    ) -> Built | Skipped:
        builders: dict[VariantName, Callable[[Path, Hardware, bool], Built | Skipped]] = {
            VariantName.ONNX_FP32: self._onnx_fp32,
            VariantName.ONNX_INT8: self._onnx_int8,
            VariantName.TORCH_INT8: self._torch_int8,
            VariantName.FP16: self._half,
            VariantName.BF16: self._half,
        }
        directory = out_dir / variant.value
        directory.mkdir(parents=True, exist_ok=True)
        result = builders[variant](directory, hw, force)
        if isinstance(result, Skipped) and not any(directory.iterdir()):
            directory.rmdir()
        return result

    def _manifest(self, target: str, variant: str, options: dict[str, Any]) -> VariantManifest:
        version = f"{self.base_version}+{variant}"
        return VariantManifest(
            target=target, options={**options, "version": version}, version=version
        )

    def _load(self, manifest: VariantManifest, directory: Path, size_bytes: int) -> Built:
        manifest.write(directory)
        cls = OnnxEmbed if manifest.target == TARGET_ONNX else TorchEmbed
        # Measure with the same thread count as the baseline; serving uses the default.
        model = cls(**manifest.options, threads=self.threads)
        model.load()
        return Built(predict=model.predict, size_bytes=size_bytes, manifest=manifest)

    def _onnx_files(self, directory: Path) -> None:
        st = self._sentence_transformer()
        st.tokenizer.save_pretrained(str(directory))
        path = directory / ONNX_FILE
        self._exported.discard(path.resolve())
        export_onnx(st, path)
        self._exported.add(path.resolve())

    def _onnx_fp32(self, directory: Path, hw: Hardware, force: bool) -> Built:
        self._onnx_files(directory)
        options = {"path": str(directory.resolve()), "max_seq_length": self._max_len()}
        manifest = self._manifest(TARGET_ONNX, VariantName.ONNX_FP32.value, options)
        return self._load(manifest, directory, tree_size_bytes(directory / ONNX_FILE))

    def _onnx_int8(self, directory: Path, hw: Hardware, force: bool) -> Built:
        exported = directory.parent / VariantName.ONNX_FP32.value / ONNX_FILE
        fp32 = directory / "model-fp32.onnx"
        self._sentence_transformer().tokenizer.save_pretrained(str(directory))
        # Quantize the onnx-fp32 export of this run rather than export again; a model.onnx
        # left in the output folder by an earlier run may be of another model: not reused.
        if exported.resolve() in self._exported and exported.is_file():
            shutil.copyfile(exported, fp32)
        else:
            export_onnx(self._sentence_transformer(), fp32)
        try:
            quantize_onnx_int8(fp32, directory / ONNX_FILE)
        finally:
            fp32.unlink(missing_ok=True)
        options = {"path": str(directory.resolve()), "max_seq_length": self._max_len()}
        manifest = self._manifest(TARGET_ONNX, VariantName.ONNX_INT8.value, options)
        return self._load(manifest, directory, tree_size_bytes(directory / ONNX_FILE))

    def _torch_int8(self, directory: Path, hw: Hardware, force: bool) -> Built | Skipped:
        if hw.device != "cpu" and not force:
            return Skipped("torch dynamic int8 runs on the CPU only; this machine serves on CUDA")
        import torch

        manifest = self._manifest(TARGET_TORCH, VariantName.TORCH_INT8.value, {"quantize": "int8"})
        manifest.write(directory)
        model = TorchEmbed(**manifest.options)
        model.load()
        # Re-derived from the packaged model at load (dynamic quantization is
        # deterministic), so no weights file is kept; its size is that of the
        # quantized state dict as torch.save writes it.
        buffer = io.BytesIO()
        torch.save(model.model.state_dict(), buffer)
        return Built(predict=model.predict, size_bytes=buffer.tell(), manifest=manifest)

    def _half(self, directory: Path, hw: Hardware, force: bool) -> Built | Skipped:
        variant = VariantName(directory.name)
        dtype = "float16" if variant is VariantName.FP16 else "bfloat16"
        reason = half_precision_skip_reason(hw, dtype)
        if reason and not force:
            return Skipped(reason)
        import copy

        import torch

        st = copy.deepcopy(self._sentence_transformer()).to(getattr(torch, dtype))
        st.save(str(directory))
        options = {"path": str(directory.resolve()), "dtype": dtype}
        manifest = self._manifest(TARGET_TORCH, variant.value, options)
        manifest.write(directory)
        model = TorchEmbed(**manifest.options)
        model.load()
        return Built(
            predict=model.predict, size_bytes=weights_size_bytes(directory), manifest=manifest
        )

    def _max_len(self) -> int:
        return int(self._sentence_transformer().max_seq_length)
