"""Oracle: gguf-py's model-name heuristics (Metadata.get_model_id_components, id_to_title,
model_weight_count_rounded_notation) -> gguf_names.json

convert_hf_to_gguf.py names a model (general.name, basename, finetune, version, size_label)
from `_name_or_path` and the folder's name with these functions; `gen convert FOLDER` does the
same in src/quant/hf/metadata.rs, whose unit test reads this file.

Run: PYTHONPATH=.../vendor/llama.cpp/gguf-py /root/hf-venv/bin/python tests/oracle/gguf_names.py
(any Python with numpy, PyYAML and llama.cpp's own gguf-py on the path).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402
import gguf  # noqa: E402
import gguf.metadata  # noqa: E402
from gguf.metadata import Metadata  # noqa: E402
from gguf.utility import model_weight_count_rounded_notation  # noqa: E402

IDS = [
    "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct-bf16", "tiny-llama-v0.1", "smol",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct", "meta-llama/Llama-2-7b-hf",
    "meta-llama/Meta-Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.2",
    "mistralai/Mixtral-8x7B-Instruct-v0.1", "Qwen/Qwen2.5-0.5B-Instruct", "bigscience/bloom-7b1",
    "gradientai/Llama-3-8B-Instruct-262k", "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "microsoft/Phi-3-mini-4k-instruct", "google/gemma-2-2b-it", "openai-community/gpt2-xl",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "NousResearch/Hermes-3-Llama-3.1-8B",
    "./local-model", "../models/Llama-3.2-1B", "my model with spaces", "Llama-3.2-1B-Q4_K_M",
    "model-iter3", "x-v2-small-lora", "v1.5-base", "a--b---c", "ModelA3B-30B-A3B",
    "llama-7b-fp16", "chat-model-instruct", "SOLAR-10.7B-v1.0",
]
TOTALS = [0, 134_515_008, 7_000_000_000, 26_346_752, 1_711_376_384]
COUNTS = [0, 999, 1000, 1001, 3_500, 999_999, 1_000_001, 26_346_752, 134_515_008,
          1_711_376_384, 7_241_732_096, 70_553_706_496, 1_000_000_000_001, 405_000_000_000]


def main():
    cases = []
    for model_id in IDS:
        for total in TOTALS:
            full, org, basename, finetune, version, size_label = \
                Metadata.get_model_id_components(model_id, total)
            cases.append({"id": model_id, "total_params": total, "full_name": full,
                          "organization": org, "basename": basename, "finetune": finetune,
                          "version": version, "size_label": size_label})
    titles = {i: Metadata.id_to_title(i) for i in IDS + ["abc2def", "ALLCAPS v2 3b x1y"]}
    counts = {str(n): model_weight_count_rounded_notation(n, 2) for n in COUNTS}
    oc.write_json("gguf_names.json", {
        "generator": {"script": "tests/oracle/gguf_names.py",
                      "packages": oc.pkg_versions(["numpy", "PyYAML"]),
                      "gguf_py": os.path.dirname(gguf.__file__),
                      "metadata_py_sha256": oc.sha256_file(gguf.metadata.__file__)},
        "components": cases, "titles": titles, "counts": counts,
    })


if __name__ == "__main__":
    main()
