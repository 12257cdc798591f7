/* libFuzzer harness for the safetensors reader: the input is a whole .safetensors file. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_open_and_read(data, size, "fuzz.safetensors");
  return 0;
}
