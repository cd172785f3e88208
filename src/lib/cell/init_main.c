/* aurae-cell-init: the cell init as a small binary of its own. auraed
 * re-executes itself with --cell-init when this binary is not installed
 * next to it; this one starts in well under a millisecond instead of the
 * ~14 ms the dynamic loader needs for auraed and its gRPC libraries. */
#include "cell/cell.h"

int main(int argc, char **argv) { return cell_init_main(argc, argv); }
