// defines: mohge::Dispatcher (the token exchange of one MoE layer between expert-parallel ranks),
//          LocalDispatcher (one rank: the identity), AllToAllDispatcher (D ranks over a
//          Collective: MPI, or threads in tests), make_dispatcher
// One layer on one of D ranks, each owning L = E/D experts (moe/expert_parallel.h):
//
//   token side:  rows in send order [S,d]: by destination rank, then expert (slot order)
//        │ dispatch                                   ▲ combine
//        ▼                                            │
//   expert side: rows for my experts [R,d]: by my expert (slot order), then source rank,
//                each source's rows in its send order  ──► my experts ──► outputs [R,d]
//
// Rows are backend memory (kernels/backend.h). Backward mirrors it: combine_backward carries
// output gradients token side → expert side, dispatch_backward carries input gradients expert
// side → token side. Counts go first (plan), then rows. Every exchange is collective: every rank
// calls plan and the four exchanges in this order (plan, dispatch, combine; combine_backward,
// dispatch_backward), even with zero rows to send or receive. With a contiguous split of the
// tokens over ranks (rank 0 the first ones), each expert sees its rows in the global token order,
// as the single-process layer does.
#pragma once
#include <memory>
#include <vector>

#include "core/collective.h"
#include "kernels/backend.h"

namespace mohge {

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Start of a forward (collective). send_rows [D·L]: rows this rank sends to each slot (slot
  // order). Afterwards expert_rows() holds what each of this rank's experts receives.
  virtual void plan(const std::vector<int>& send_rows) = 0;
  // The exchanges. Each returns the rows in the receiver's layout: either its argument itself (one
  // rank: nothing moves) or the dispatcher's own buffer, valid until the same exchange runs again.
  // Callers keep arguments alive and unmodified while they use a result.
  virtual const float* dispatch(const float* send) = 0;              // [S,d] -> [R,d]
  virtual const float* combine(const float* expert_out) = 0;         // [R,d] -> [S,d]
  virtual const float* combine_backward(const float* dsend) = 0;     // [S,d] -> [R,d]
  virtual const float* dispatch_backward(const float* dexpert) = 0;  // [R,d] -> [S,d]

  // [L] rows each of this rank's experts receives (slot order), from the last plan.
  const std::vector<int>& expert_rows() const { return expert_rows_; }
  int64_t received_rows() const { return received_; }  // R
  int64_t sent_rows() const { return sent_; }          // S

 protected:
  std::vector<int> expert_rows_;
  int64_t received_ = 0, sent_ = 0;
};

// D = 1: the tokens' rank owns every expert, send order is already grouped by expert; the
// exchanges return their arguments.
class LocalDispatcher : public Dispatcher {
 public:
  void plan(const std::vector<int>& send_rows) override;
  const float* dispatch(const float* send) override { return send; }
  const float* combine(const float* expert_out) override { return expert_out; }
  const float* combine_backward(const float* dsend) override { return dsend; }
  const float* dispatch_backward(const float* dexpert) override { return dexpert; }
};

// D ranks: counts with one alltoall, rows with one alltoallv per exchange (MPI_Alltoallv's
// per-rank blocks), then a reorder of the received rows from source-major to expert-major (and
// back before returning rows), one gather_rows on the backend each way.
class AllToAllDispatcher : public Dispatcher {
 public:
  // be: where the rows live; group: the expert-parallel ranks (size D), which must reach the
  // backend's memory; experts_per_rank: L; d: floats per row.
  AllToAllDispatcher(Backend& be, Collective& group, int experts_per_rank, int d);
  void plan(const std::vector<int>& send_rows) override;
  const float* dispatch(const float* send) override { return to_experts(send, x_); }
  const float* combine(const float* expert_out) override { return to_tokens(expert_out, y_); }
  const float* combine_backward(const float* dsend) override { return to_experts(dsend, dy_); }
  const float* dispatch_backward(const float* dexpert) override { return to_tokens(dexpert, dx_); }

 private:
  const float* to_experts(const float* send, Buffer<float>& out);
  const float* to_tokens(const float* rows, Buffer<float>& out);
  Backend& be_;
  Collective& group_;
  int D_, L_, d_;
  std::vector<int> recv_rows_;  // [D·L] rows from rank r for my expert i, at r·L+i
  std::vector<int64_t> send_count_, send_offset_, recv_count_, recv_offset_;  // [D] floats, per rank
  // received rows: expert-major row p is source-major row by_expert_[p]; source-major row q is
  // expert-major row by_source_[q]
  Buffer<int32_t> by_expert_, by_source_;
  Buffer<float> staged_, x_, y_, dy_, dx_;  // staged: received rows in source-major order
};

// The dispatcher for rank `rank` of `ranks`: LocalDispatcher for one rank, else an
// AllToAllDispatcher over group, which must have that size and rank (mohge::Error otherwise, also
// when group is null).
std::unique_ptr<Dispatcher> make_dispatcher(Backend& be, int ranks, int rank, int experts_per_rank, int d,
                                            Collective* group);

}  // namespace mohge
