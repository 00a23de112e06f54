// Reference logits from llama.cpp for the engine's agreement tests (crates/engine/tests/it/): built by
// models/tools/build.sh against the pinned llama.cpp, run by models/tools/make-reference.sh.
//
// Why a C++ program and not the Python binding: the binding takes about 35 minutes to build on the
// project's 2-core machines, this program a few seconds once the static libraries exist (they come with
// `llama-quantize`, which the test setup builds anyway to make the model variants).
//
// usage: reference-logits MODEL.gguf < cases.txt > cases.jsonl
//   stdin: one case per line, the prompt's token ids separated by spaces (the caller tokenizes once, so
//   every variant of a model sees the same ids).
//   stdout: one JSON object per case: `greedy_ids` (up to 48 tokens, ending at an end-of-generation token
//   when reached: a prefill of the prompt, then one decode step per token), `steps` (teacher-forced: the
//   prompt and the greedy tokens in one batch; per generated position llama.cpp's top-5 ids and logits and
//   the top-1/top-2 margin) and `last_prompt_logits_head` (the first 256 logits at the last prompt position,
//   from the teacher-forced batch).
// Settings match llama-cpp-python's defaults that the earlier fixture was made with: one thread, context 512,
// batch 512, f16 KV cache, flash attention off, weight repacking on (llama.cpp's default).
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int kMaxNew = 48;
constexpr int kHead = 256;

void quiet(ggml_log_level, const char *, void *) {}

int argmax(const float * logits, int n) {
    return static_cast<int>(std::max_element(logits, logits + n) - logits);
}

// Decodes `tokens` from position `start` as one batch; `want_from` is the first index whose logits are kept.
bool decode(llama_context * ctx, const std::vector<llama_token> & tokens, int start, size_t want_from) {
    llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
    for (size_t i = 0; i < tokens.size(); ++i) {
        batch.token[i]     = tokens[i];
        batch.pos[i]       = start + static_cast<int>(i);
        batch.n_seq_id[i]  = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i]    = i >= want_from;
    }
    batch.n_tokens = static_cast<int32_t>(tokens.size());
    const bool ok  = llama_decode(ctx, batch) == 0;
    llama_batch_free(batch);
    return ok;
}

void print_floats(const float * v, int n) {
    std::printf("[");
    for (int i = 0; i < n; ++i) {
        std::printf("%s%.9g", i ? "," : "", v[i]);
    }
    std::printf("]");
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf < cases.txt\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model   = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab         = llama_vocab_n_tokens(vocab);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx                = 512;
    cp.n_batch              = 512;
    cp.n_ubatch             = 512;
    cp.n_threads            = 1;
    cp.n_threads_batch      = 1;
    cp.flash_attn_type      = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf              = true;
    llama_context * ctx     = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "cannot create a context\n");
        return 1;
    }

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::vector<llama_token> prompt;
        for (llama_token t; in >> t;) {
            prompt.push_back(t);
        }
        if (prompt.empty()) {
            continue;
        }

        // Greedy generation: the prompt in one batch, then one token per step.
        llama_memory_clear(llama_get_memory(ctx), true);
        std::vector<llama_token> greedy;
        if (!decode(ctx, prompt, 0, prompt.size() - 1)) {
            return 1;
        }
        while (static_cast<int>(greedy.size()) < kMaxNew) {
            const llama_token next = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
            greedy.push_back(next);
            if (llama_vocab_is_eog(vocab, next)) {
                break;
            }
            const int pos = static_cast<int>(prompt.size() + greedy.size()) - 1;
            if (!decode(ctx, { next }, pos, 0)) {
                return 1;
            }
        }

        // Teacher-forced: the prompt and the greedy tokens in one batch.
        llama_memory_clear(llama_get_memory(ctx), true);
        std::vector<llama_token> forced = prompt;
        forced.insert(forced.end(), greedy.begin(), greedy.end());
        if (!decode(ctx, forced, 0, prompt.size() - 1)) {
            return 1;
        }
        std::printf("{\"prompt_ids\":[");
        for (size_t i = 0; i < prompt.size(); ++i) {
            std::printf("%s%d", i ? "," : "", prompt[i]);
        }
        std::printf("],\"greedy_ids\":[");
        for (size_t i = 0; i < greedy.size(); ++i) {
            std::printf("%s%d", i ? "," : "", greedy[i]);
        }
        std::printf("],\"steps\":[");
        for (size_t step = 0; step < greedy.size(); ++step) {
            const float *    row = llama_get_logits_ith(ctx, static_cast<int32_t>(prompt.size() - 1 + step));
            std::vector<int> order(n_vocab);
            std::iota(order.begin(), order.end(), 0);
            std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                              [row](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
            std::printf("%s{\"top5_ids\":[%d,%d,%d,%d,%d],\"top5_logits\":", step ? "," : "", order[0], order[1],
                        order[2], order[3], order[4]);
            float top[5];
            for (int k = 0; k < 5; ++k) {
                top[k] = row[order[k]];
            }
            print_floats(top, 5);
            std::printf(",\"margin\":%.9g}", top[0] - top[1]);
        }
        std::printf("],\"last_prompt_logits_head\":");
        print_floats(llama_get_logits_ith(ctx, static_cast<int32_t>(prompt.size() - 1)), kHead);
        std::printf("}\n");
    }
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
