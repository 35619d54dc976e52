#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

// Like every Trellis binary, tests ignore SIGPIPE: a peer closing a socket is
// an error to handle, not a reason to die.
int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
