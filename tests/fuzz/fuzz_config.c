/* libFuzzer target: auraed's JSON config and aer's client config parsers,
 * both of which read files an operator (or an attacker with write access to
 * a home directory) controls. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  au_error err = {0};

  auraed_config c;
  config_init_defaults(&c);
  config_parse(&c, text, "fuzz", &err);
  config_free(&c);

  aer_client_config cc = {0};
  aer_config_parse(text, &cc, &err);
  aer_config_clear(&cc);

  name_validate_path("name", text, &err);
  size_t parsed;
  config_parse_size(text, &parsed);
  free(text);
  return 0;
}
