// Makes the test variants of the default model (models/make-variants.sh): llama.cpp's own quantizer,
// `llama_model_quantize` (what the `llama-quantize` tool and llama-cpp-python call), with requantization
// allowed, so a Q4_1 file can become Q4_K_M, Q6_K, ... without the original f16 weights.
//
// Why not `llama-quantize`: that tool links llama.cpp's `common` library (argument parsing, chat templates,
// JSON), which is most of the build; this program needs only libllama, which the test setup builds once.
// The output is the same bytes: the same library function with the same parameters.
//
// usage: quantize IN.gguf OUT.gguf FTYPE   (FTYPE: llama.cpp's `llama_ftype` number, e.g. 15 for Q4_K_M)
#include "llama.h"

#include <cstdio>
#include <cstdlib>

int main(int argc, char ** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s IN.gguf OUT.gguf FTYPE\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_quantize_params params = llama_model_quantize_default_params();
    params.ftype                       = static_cast<llama_ftype>(std::atoi(argv[3]));
    params.allow_requantize            = true;
    // One thread: the result does not depend on it, and the test setup shares its cores with cargo.
    params.nthread                     = 1;
    const uint32_t rc                  = llama_model_quantize(argv[1], argv[2], &params);
    llama_backend_free();
    return rc == 0 ? 0 : 1;
}
