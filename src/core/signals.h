// defines: signals_take_over, InterruptScope, signal_name — SIGINT, SIGTERM and SIGHUP taken by one thread
// A signal handler must never run on a compute thread: oneDNN 2.6 moves the stack pointer onto
// heap memory inside its GEMM, so a handler running there writes over the heap (issue 12: Ctrl-C
// crashed training about one time in four). The three signals are blocked in every thread and
// one dedicated thread takes them with sigwait; code that wants to stop cleanly polls a flag.
#pragma once
#include <string>

namespace mohge {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread, and so in every thread created after
// it, and starts the thread that takes them. Call first thing in main, before anything starts a
// thread (OpenMP, oneDNN). Outside an InterruptScope a signal ends the process at once, by that
// signal, as its default action would. A signal ignored on entry (nohup) stays ignored.
void signals_take_over();

// While one is alive (one at a time), the first of those signals is recorded for its owner to poll
// (training saves a checkpoint and stops); a second one ends the process at once.
class InterruptScope {
 public:
  InterruptScope();  // forgets any earlier signal
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
  int signal() const;  // the signal received, 0 if none
};

// The signal the live InterruptScope recorded, 0 if none; any thread may poll it (the MPI
// watchdog: mpirun ends a job whose rank died with SIGTERM).
int interrupt_signal();

// "SIGINT", "SIGTERM", ...
std::string signal_name(int sig);

}  // namespace mohge
