// Signals and reload.
#include <csignal>

#include "runtime/runtime_impl.hpp"
#include "weir/log.hpp"

namespace weir::runtime {

void Runtime::Impl::on_signal(int signum) {
  const char* name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (stopping_) {
    log::error("weir", "second {} while draining: exiting now", name);
    abandon(130);
    return;
  }
  log::info("weir", "received {}", name);
  shutdown();
}

}  // namespace weir::runtime
