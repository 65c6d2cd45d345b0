// defines: LocalDispatcher, AllToAllDispatcher, make_dispatcher (see dispatcher.h)
#include "moe/dispatcher.h"

#include <numeric>

#include "core/error.h"

namespace mohge {

void LocalDispatcher::plan(const std::vector<int>& send_rows) {
  expert_rows_ = send_rows;
  sent_ = received_ = std::accumulate(send_rows.begin(), send_rows.end(), (int64_t)0);
}

AllToAllDispatcher::AllToAllDispatcher(Backend& be, Collective& group, int experts_per_rank, int d)
    : be_(be), group_(group), D_(group.size()), L_(experts_per_rank), d_(d) {
  MOHGE_CHECK(D_ >= 1 && L_ >= 1 && d_ >= 1, "dispatcher: {} ranks, {} experts per rank, row length {} must be >= 1",
              D_, L_, d_);
  recv_rows_.resize((size_t)D_ * L_);
  for (auto* v : {&send_count_, &send_offset_, &recv_count_, &recv_offset_}) v->resize(D_);
}

void AllToAllDispatcher::plan(const std::vector<int>& send_rows) {
  const int D = D_, L = L_;
  MOHGE_CHECK((int)send_rows.size() == D * L, "dispatcher: {} send counts for {} ranks × {} experts",
              send_rows.size(), D, L);
  group_.alltoall(send_rows.data(), recv_rows_.data(), L);
  int64_t sent = 0, received = 0;
  std::vector<int64_t> source_first(D * L);  // first source-major row of block (r, i)
  for (int r = 0; r < D; r++) {
    int64_t s = 0, q = 0;
    for (int i = 0; i < L; i++) {
      s += send_rows[r * L + i];
      source_first[r * L + i] = received + q;
      q += recv_rows_[r * L + i];
    }
    send_offset_[r] = sent * d_, send_count_[r] = s * d_;
    recv_offset_[r] = received * d_, recv_count_[r] = q * d_;
    sent += s, received += q;
  }
  sent_ = sent, received_ = received;
  expert_rows_.assign(L, 0);
  std::vector<int32_t> by_expert(received), by_source(received);
  for (int64_t i = 0, p = 0; i < L; i++)
    for (int r = 0; r < D; r++) {
      for (int k = 0; k < recv_rows_[r * L + i]; k++, p++) {
        by_expert[p] = (int32_t)(source_first[r * L + i] + k);
        by_source[by_expert[p]] = (int32_t)p;
      }
      expert_rows_[i] += recv_rows_[r * L + i];
    }
  by_expert_.ensure(be_, received), by_source_.ensure(be_, received);
  by_expert_.upload(by_expert.data(), received), by_source_.upload(by_source.data(), received);
}

const float* AllToAllDispatcher::to_experts(const float* send, Buffer<float>& out) {
  float* staged = staged_.ensure(be_, (size_t)received_ * d_);
  be_.synchronize();  // the rows the collective reads are complete
  group_.alltoallv(send, send_count_.data(), send_offset_.data(), staged, recv_count_.data(), recv_offset_.data());
  float* o = out.ensure(be_, (size_t)received_ * d_);
  be_.gather_rows(o, staged, by_expert_.data(), (int)received_, d_);
  return o;
}

const float* AllToAllDispatcher::to_tokens(const float* rows, Buffer<float>& out) {
  float* staged = staged_.ensure(be_, (size_t)received_ * d_);
  be_.gather_rows(staged, rows, by_source_.data(), (int)received_, d_);
  float* o = out.ensure(be_, (size_t)sent_ * d_);
  be_.synchronize();
  group_.alltoallv(staged, recv_count_.data(), recv_offset_.data(), o, send_count_.data(), send_offset_.data());
  return o;
}

std::unique_ptr<Dispatcher> make_dispatcher(Backend& be, int ranks, int rank, int experts_per_rank, int d,
                                            Collective* group) {
  if (ranks == 1) return std::make_unique<LocalDispatcher>();
  MOHGE_CHECK(group != nullptr,
              "expert parallel over {} ranks needs a communicator for the token exchange (none given)", ranks);
  MOHGE_CHECK(group->size() == ranks && group->rank() == rank,
              "expert parallel: rank {} of {} given, but the communicator is rank {} of {}", rank, ranks,
              group->rank(), group->size());
  return std::make_unique<AllToAllDispatcher>(be, *group, experts_per_rank, d);
}

}  // namespace mohge
