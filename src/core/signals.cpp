#include "core/signals.h"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace mohge {

namespace {

std::atomic<bool> g_deferred{false};  // an InterruptScope is alive
std::atomic<int> g_received{0};       // the first signal taken inside it

sigset_t taken_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  return set;
}

// The default action, from the signal thread: unblocked here, the re-raised signal ends the process.
[[noreturn]] void end_by(int sig) {
  std::signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  raise(sig);
  std::_Exit(128 + sig);  // not reached
}

void take_signals(sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    int none = 0;
    if (!(g_deferred && g_received.compare_exchange_strong(none, sig))) end_by(sig);
  }
}

}  // namespace

void signals_take_over() {
  static const bool started = [] {
    sigset_t set = taken_signals();
    int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr);
    MOHGE_CHECK(rc == 0, "cannot block signals: {}", std::strerror(rc));
    std::thread(take_signals, set).detach();
    return true;
  }();
  (void)started;
}

InterruptScope::InterruptScope() {
  g_received = 0;
  g_deferred = true;
}

InterruptScope::~InterruptScope() { g_deferred = false; }

int InterruptScope::signal() const { return g_received; }

int interrupt_signal() { return g_deferred ? g_received.load() : 0; }

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

}  // namespace mohge
