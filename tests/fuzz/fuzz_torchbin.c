/* libFuzzer harness for the PyTorch .bin reader. An input starting with "PK" is a whole zip file;
 * anything else is taken as data.pkl and wrapped in a torch.save-layout zip with storages
 * archive/data/0..15 (512 bytes each), so pickle mutations need not keep zip sizes consistent. */
#include <stdio.h>

#include "ckpt_build.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
    fuzz_open_and_read(data, size, "fuzz.bin");
    return 0;
  }
  static uint8_t storage[512];
  static char names[16][24];
  for (int i = 0; i < 512; i++)
    storage[i] = (uint8_t)(i * 37 + 11);
  zb_entry e[18] = {{"archive/data.pkl", data, size, 0}, {"archive/byteorder", "little", 6, 0}};
  for (int i = 0; i < 16; i++) {
    snprintf(names[i], sizeof names[i], "archive/data/%d", i);
    e[2 + i] = (zb_entry){names[i], storage, sizeof storage, 0};
  }
  tb_buf zip = {0};
  zb_write(&zip, e, 18, false);
  fuzz_open_and_read(zip.p, zip.n, "fuzz.bin");
  tb_free(&zip);
  return 0;
}
