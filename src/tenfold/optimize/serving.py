"""Model classes that serve an optimized variant of ``embed`` through the normal model API.

``tenfold serve --variant DIR`` reads ``DIR/variant.json``, builds ``cls(**options)``
and calls ``load()`` in each worker. Both classes keep ``Embed``'s name, input
schema, ``item_size`` and batching defaults (they subclass it) and take their
``version`` from the options, so a cache never mixes outputs of two variants::

    model = load_variant(Path("opt/onnx-int8"))   # OnnxEmbed, version "...+onnx-int8"
    model.load()
    model.predict(["a sentence"])
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from tenfold.examples.embed import Embed, load_sentence_transformer
from tenfold.model import Model, load_model_class
from tenfold.optimize.variants import VariantManifest

ONNX_FILE = "model.onnx"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _version(options: dict[str, Any], variant: str) -> str:
    return str(options.get("version") or f"{Embed.version}+{variant}")


class OnnxEmbed(Embed):
    """``embed`` run by ONNX Runtime (CUDA provider when present, else CPU).

    Options: ``path`` (variant directory holding ``model.onnx`` and the tokenizer
    files), ``version``, ``threads`` (intra-op threads, 0 = ONNX Runtime's default),
    ``max_seq_length`` (tokens; longer inputs are truncated as sentence-transformers does).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.version = _version(options, "onnx")
        self.path = Path(str(options.get("path", ".")))
        self.threads = int(options.get("threads", 0))
        self.max_seq_length = int(options.get("max_seq_length", 256))

    def load(self) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3  # warnings about unused initializers are noise here
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path / ONNX_FILE), so, providers=providers)
        self._input_names = {i.name for i in self.session.get_inputs()}
        self.predict(["warm up"])

    def predict(self, batch: list[str]) -> list[Any]:
        import numpy as np

        enc = self.tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="np",
        )
        feed = {
            k: np.asarray(enc[k], dtype=np.int64) for k in ONNX_INPUTS if k in self._input_names
        }
        (vectors,) = self.session.run(["embedding"], feed)
        return list(vectors)


def quantize_int8(module: Any) -> Any:
    """Dynamic int8 (per-tensor weights, activations quantized per batch) of every Linear.

    ``torch.ao.quantization.quantize_dynamic`` is deprecated in torch 2.13 in favour of
    torchao's ``quantize_(model, Int8DynamicActivationInt8WeightConfig())``. We keep it,
    with its warnings silenced, because that replacement measured 13x *slower* on this
    CPU in eager mode (1.2 vs 13.7 items/s at batch 32 for all-MiniLM-L6-v2: it has no
    fused int8 CPU kernel without torch.compile), which defeats the variant's purpose.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize = torch.ao.quantization.quantize_dynamic
        return quantize(module, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]


class TorchEmbed(Embed):
    """``embed`` in PyTorch with a dtype or dynamic int8 quantization.

    Options: ``path`` (a saved sentence-transformers directory; default the packaged
    model), ``dtype`` ("float32", "float16", "bfloat16"), ``quantize`` ("int8" or absent),
    ``version``.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.dtype = str(options.get("dtype", "float32"))
        self.quantize = options.get("quantize")
        self.path = options.get("path")
        self.version = _version(options, self.quantize or self.dtype)

    def load(self) -> None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.path:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.path), device=device)
        else:
            model = load_sentence_transformer(device)
        if self.quantize == "int8":
            # Dynamic int8 runs on the CPU only.
            model = quantize_int8(model.to("cpu"))
        elif self.quantize is not None:
            raise ValueError(f"unknown quantize option {self.quantize!r}")
        model = model.to(getattr(torch, self.dtype))
        self.model = model.eval()
        self.predict(["warm up"])

    def predict(self, batch: list[str]) -> list[Any]:
        import torch

        with torch.inference_mode():
            vectors = self.model.encode(
                batch, batch_size=len(batch), convert_to_tensor=True, show_progress_bar=False
            )
        return list(vectors.float().cpu().numpy())


def load_variant(directory: Path) -> Model[Any, Any]:
    """Instantiate the model a variant directory describes (``load()`` not yet called)."""
    manifest = VariantManifest.read(directory)
    cls = load_model_class(manifest.target)
    return cls(**manifest.options)
