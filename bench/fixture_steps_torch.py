#!/usr/bin/env python3
"""The training fixture's 5 AdamW steps in PyTorch (Debian python3-torch) at f32 or f64, from the
fixture's bf16 weights, with a Qwen2 forward of Hugging Face semantics; prints the losses and the
worst per-tensor ||got - want|| / ||want|| against the fixture's weights_after. It shows what an f32
path other than retort's reaches on that bound (docs/training.md, "Correctness").
  /usr/bin/python3 bench/fixture_steps_torch.py [tiny-r1-qwen] [f32|f64] [threads]
Qwen2 fixtures only (no llama3 RoPE scaling)."""
import json, math, os, struct, sys
import numpy as np
import torch

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures")
name = sys.argv[1] if len(sys.argv) > 1 else "tiny-r1-qwen"
dtype = {"f32": torch.float32, "f64": torch.float64}[sys.argv[2] if len(sys.argv) > 2 else "f32"]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
torch.set_num_threads(threads)

def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        if v["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif v["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype=np.float32)
        else:
            raise ValueError(v["dtype"])
        out[k] = torch.from_numpy(arr.copy().reshape(v["shape"]))
    return out

cfg = json.load(open(f"{FIX}/{name}/config.json"))
exp = json.load(open(f"{FIX}/train-{name}/expected.json"))
W = {k: v.to(dtype).clone().requires_grad_(True) for k, v in load_safetensors(f"{FIX}/{name}/model.safetensors").items()}
want = load_safetensors(f"{FIX}/train-{name}/weights_after.safetensors")
inp = torch.tensor(exp["input_tokens"]); tgt = torch.tensor(exp["target_tokens"])
B, T = inp.shape
C = cfg["hidden_size"]; H = cfg["num_attention_heads"]; KV = cfg["num_key_value_heads"]; hd = C // H
L = cfg["num_hidden_layers"]; eps = cfg["rms_norm_eps"]
inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
emb = torch.cat([ang, ang], -1)
cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)

def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

def rot(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)

def forward():
    x = W["model.embed_tokens.weight"][inp]
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        def lin(n, t):
            y = t @ W[p + n + ".weight"].T
            b = W.get(p + n + ".bias")
            return y + b if b is not None else y
        q = lin("self_attn.q_proj", h).view(B, T, H, hd).transpose(1, 2)
        k = lin("self_attn.k_proj", h).view(B, T, KV, hd).transpose(1, 2)
        v = lin("self_attn.v_proj", h).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        k = k.repeat_interleave(H // KV, 1); v = v.repeat_interleave(H // KV, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1)
        y = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
        x = x + lin("self_attn.o_proj", y)
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = lin("mlp.gate_proj", h); u = lin("mlp.up_proj", h)
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(g) * u)
    x = rms(x, W["model.norm.weight"])
    logits = x @ W["lm_head.weight"].T
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))

ad = exp["adamw"]
decay = [w for k, w in W.items() if w.dim() >= 2]; nodecay = [w for k, w in W.items() if w.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": ad["weight_decay"]}, {"params": nodecay, "weight_decay": 0.0}],
                        lr=ad["lr"], betas=(ad["beta1"], ad["beta2"]), eps=ad["eps"])
for step in range(ad["steps"]):
    opt.zero_grad()
    loss = forward()
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.10f} want {exp['losses_before_each_step'][step]:.10f}")
errs = []
for k, w in W.items():
    d = w.detach().double() - want[k].double()
    errs.append((float(d.norm() / want[k].double().norm()), k))
errs.sort(reverse=True)
print(f"{name} {sys.argv[2] if len(sys.argv) > 2 else 'f32'} threads {threads}: worst tensors")
for e, k in errs[:6]:
    print(f"  {e:.3g} {k}")
