#include <string.h>

#include "cell/cell.h"
#include "daemon.h"

int main(int argc, char **argv) {
  /* A cell's init is auraed re-executed (src/lib/cell/init.c). */
  if (argc > 1 && strcmp(argv[1], "--cell-init") == 0) return cell_init_main(argc, argv);
  return daemon_main(argc, argv);
}
