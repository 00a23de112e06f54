"""Writes a GGUF with Llama-Guard-3-1B's exact shape and random weights, for measuring what a guard check
costs (benches/run-guard-cost.sh). The cost of a check depends on the model's shape and on how many tokens
the prompt has, not on the weights' values, and no Llama Guard weights can be downloaded here.

Shape (Llama-Guard-3-1B is a Llama 3.2 1B fine-tune): 16 layers, hidden 2048, FFN 8192, 32 attention heads
with 8 KV heads (head dim 64), vocabulary 128,256, tied embeddings (no `output.weight`). Weights Q8_0 (the
format Llama Guard 3 1B GGUFs are commonly published in), norms F32. The context is written as 8,192
positions instead of 131,072: a check uses a few hundred.

Tokenizer: the bundled SmolLM2 model's byte-level BPE (its tokens, types and merges), with Llama 3's four
chat control tokens added so the guard prompt takes its Llama 3 form, padded with never-produced pieces to
128,256 entries. Its texts split into about as many tokens as Llama 3's tokenizer makes of English, so the
prompt lengths are realistic; the count is printed by the bench.

usage: python make_guard_shape.py <SmolLM2 gguf> <output gguf>     (needs the `gguf` and `numpy` packages)
"""
import sys

import numpy as np
import gguf

VOCAB = 128_256
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 2048, 8192, 16, 32, 8
HEAD_DIM = HIDDEN // HEADS
LLAMA3_CONTROL = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def field(reader, name):
    return reader.fields[name].contents()


def main(source, target):
    reader = gguf.GGUFReader(source)
    tokens = list(field(reader, "tokenizer.ggml.tokens"))
    types = [int(t) for t in field(reader, "tokenizer.ggml.token_type")]
    merges = list(field(reader, "tokenizer.ggml.merges"))
    first_control = len(tokens)
    tokens += LLAMA3_CONTROL
    types += [gguf.TokenType.CONTROL] * len(LLAMA3_CONTROL)
    tokens += [f"<pad_{i}>" for i in range(VOCAB - len(tokens))]
    types += [gguf.TokenType.UNUSED] * (VOCAB - len(types))
    assert len(tokens) == VOCAB == len(types)

    writer = gguf.GGUFWriter(target, "llama")
    writer.add_name("Llama-Guard-3-1B shape, random weights")
    writer.add_context_length(8192)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(500_000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(str(field(reader, "tokenizer.ggml.pre")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(first_control)  # <|begin_of_text|>
    writer.add_eos_token_id(first_control + 3)  # <|eot_id|>
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(7)

    def weight(name, rows, cols):
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def norm(name):
        writer.add_tensor(name, np.ones(HIDDEN, dtype=np.float32))

    weight("token_embd.weight", VOCAB, HIDDEN)
    norm("output_norm.weight")
    kv = KV_HEADS * HEAD_DIM
    for layer in range(LAYERS):
        p = f"blk.{layer}."
        norm(p + "attn_norm.weight")
        weight(p + "attn_q.weight", HIDDEN, HIDDEN)
        weight(p + "attn_k.weight", kv, HIDDEN)
        weight(p + "attn_v.weight", kv, HIDDEN)
        weight(p + "attn_output.weight", HIDDEN, HIDDEN)
        norm(p + "ffn_norm.weight")
        weight(p + "ffn_gate.weight", FFN, HIDDEN)
        weight(p + "ffn_up.weight", FFN, HIDDEN)
        weight(p + "ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
