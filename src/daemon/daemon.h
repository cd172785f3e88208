/* auraed as a daemon: flags + config, the lock, listeners, signals. */
#pragma once

/* Runs auraed until SIGTERM/SIGINT; returns the process exit code. */
int daemon_main(int argc, char **argv);
