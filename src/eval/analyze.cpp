// defines: the analysis of analyze.h (measurements, log series, CSVs, summary, the whole command)
#include "eval/analyze.h"


#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <regex>

#include "core/error.h"
#include "core/finite.h"
#include "core/fileio.h"
#include "data/dataloader.h"
#include "data/shards.h"
#include "data/prepared_meta.h"
#include "data/tokenizer.h"
#include "eval/report_html.h"
#include "model/model_io.h"
#include "moe/metrics.h"
#include "moe/placement.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mohge {

namespace {

double num(const json& j) { return j.is_number() ? j.get<double>() : NAN; }

// NaN → null (nlohmann would do it too, but explicitly keeps the intent visible)
json jnum(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json jmatrix(const std::vector<double>& m, size_t K) {
  json rows = json::array();
  for (size_t i = 0; i < K; i++) {
    json r = json::array();
    for (size_t k = 0; k < K; k++) r.push_back(jnum(m[i * K + k]));
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string bucket_label(int k) {
  const long lo = 1L << k, hi = (1L << (k + 1)) - 1;
  return lo == hi ? fmt::format("{}", lo) : fmt::format("{}\u2013{}", lo, hi);
}

std::string piece_of(const Tokenizer* tok, int id) {
  if (!tok || id >= tok->vocab_size()) return "";
  try {
    return tok->id_to_piece(id);
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

// ------------------------------------------------------------------------------- Wasserstein
double wasserstein1(const std::vector<double>& x, const std::vector<double>& p, const std::vector<double>& q) {
  MOHGE_CHECK(x.size() == p.size() && p.size() == q.size(),
              "wasserstein1: support of {} points but weights of {} and {}", x.size(), p.size(), q.size());
  double sp = 0, sq = 0;
  for (size_t i = 0; i < x.size(); i++) {
    MOHGE_CHECK(p[i] >= 0 && q[i] >= 0 && std::isfinite(p[i]) && std::isfinite(q[i]),
                "wasserstein1: weight {} is negative or not finite", i);
    MOHGE_CHECK(i == 0 || x[i] >= x[i - 1], "wasserstein1: support is not ascending at point {}", i);
    sp += p[i], sq += q[i];
  }
  if (!(sp > 0) || !(sq > 0)) return NAN;
  double P = 0, Q = 0, w = 0;
  for (size_t i = 0; i + 1 < x.size(); i++) {
    P += p[i] / sp, Q += q[i] / sq;
    w += std::fabs(P - Q) * (x[i + 1] - x[i]);
  }
  return w;
}

double wasserstein1(const std::vector<double>& p, const std::vector<double>& q) {
  std::vector<double> x(p.size());
  std::iota(x.begin(), x.end(), 0.0);
  return wasserstein1(x, p, q);
}

std::vector<double> wasserstein_matrix(const std::vector<double>& x, const std::vector<std::vector<double>>& dists) {
  const size_t K = dists.size(), U = x.size();
  for (size_t i = 1; i < U; i++) MOHGE_CHECK(x[i] >= x[i - 1], "wasserstein_matrix: support is not ascending at {}", i);
  // CDFs once, then Σ |F_a − F_b|·Δx per pair
  std::vector<double> cdf(K * U, 0.0);
  std::vector<bool> has(K, false);
  for (size_t k = 0; k < K; k++) {
    MOHGE_CHECK(dists[k].size() == U, "wasserstein_matrix: distribution {} has {} weights for {} points", k,
                dists[k].size(), U);
    double s = 0;
    for (double v : dists[k]) {
      MOHGE_CHECK(v >= 0 && std::isfinite(v), "wasserstein_matrix: negative or non-finite weight");
      s += v;
    }
    if (!(s > 0)) continue;
    has[k] = true;
    double c = 0;
    for (size_t i = 0; i < U; i++) cdf[k * U + i] = (c += dists[k][i] / s);
  }
  std::vector<double> dx(U > 0 ? U - 1 : 0);
  for (size_t i = 0; i + 1 < U; i++) dx[i] = x[i + 1] - x[i];
  std::vector<double> m(K * K, NAN);
  for (size_t a = 0; a < K; a++) {
    if (!has[a]) continue;
    m[a * K + a] = 0.0;
    for (size_t b = a + 1; b < K; b++) {
      if (!has[b]) continue;
      const double *A = &cdf[a * U], *B = &cdf[b * U];
      double w = 0;
      for (size_t i = 0; i + 1 < U; i++) w += std::fabs(A[i] - B[i]) * dx[i];
      m[a * K + b] = m[b * K + a] = w;
    }
  }
  return m;
}

int frequency_bucket_of(double count) {
  MOHGE_CHECK(count >= 1 && std::isfinite(count), "frequency bucket of a count {} < 1", count);
  int e = 0;
  std::frexp(count, &e);  // count = m·2^e, m ∈ [0.5, 1)  →  ⌊log2 count⌋ = e − 1
  return e - 1;
}

std::vector<double> token_frequencies(const std::string& shard_path, int V) {
  TokenShard s(shard_path);
  std::vector<double> f(V, 0.0);
  for (uint64_t i = 0; i < s.size(); i++) {
    const int32_t t = s[i];
    MOHGE_CHECK(t >= 0 && t < V, "{}: token {} at position {} is outside the model's vocabulary of {}", shard_path, t,
                i, V);
    f[t] += 1;
  }
  return f;
}

// ---------------------------------------------------------------------------- RoutingRecorder
RoutingRecorder::RoutingRecorder(const ModelConfig& cfg) : cfg_(cfg) {
  const int E = cfg.moe.num_experts, V = cfg.vocab_size;
  const int Ng = cfg.moe.router == RouterKind::two_level ? cfg.moe.num_expert_groups : 0;
  for (int l = 0; l < cfg.num_layers; l++)
    if (cfg.layer_is_moe(l)) {
      Layer L;
      L.layer = l;
      L.n_e.assign(E, 0.0);
      L.n_g.assign(Ng, 0.0);
      L.count.assign((size_t)E * V, 0);
      L.gate.assign((size_t)E * V, 0.0);
      layers_.push_back(std::move(L));
    }
  MOHGE_CHECK(!layers_.empty(), "no MoE layers to analyze (ffn_kind = {}, {} layers)", to_string(cfg.ffn_kind), cfg.num_layers);
  occ_.assign(V, 0.0);
}

void RoutingRecorder::add_layer(int slot, const Routing& r, const int32_t* tokens) {
  MOHGE_CHECK(slot >= 0 && slot < (int)layers_.size(), "routing recorder: no MoE layer slot {}", slot);
  Layer& L = layers_[slot];
  const int E = cfg_.moe.num_experts, V = cfg_.vocab_size;
  MOHGE_CHECK((int)r.offsets.size() == r.T + 1 && (int)r.tokens_per_expert.size() == E,
              "routing recorder: routing of layer {} has {} offsets for {} tokens and {} expert counts for {} experts",
              L.layer, r.offsets.size(), r.T, r.tokens_per_expert.size(), E);
  for (int t = 0; t < r.T; t++) {
    const int v = tokens[t];
    MOHGE_CHECK(v >= 0 && v < V, "routing recorder: token {} outside the vocabulary of {}", v, V);
    for (int a = r.offsets[t]; a < r.offsets[t + 1]; a++) {
      const int e = r.expert[a];
      MOHGE_CHECK(e >= 0 && e < E, "routing recorder: expert {} of {}", e, E);
      L.count[(size_t)e * V + v] += 1;
      L.gate[(size_t)e * V + v] += r.weight[a];
    }
  }
  for (int e = 0; e < E; e++) L.n_e[e] += r.tokens_per_expert[e];
  if (!L.n_g.empty()) {
    MOHGE_CHECK(r.tokens_per_group.size() == L.n_g.size(), "routing recorder: {} group counts for {} groups",
                r.tokens_per_group.size(), L.n_g.size());
    for (size_t g = 0; g < L.n_g.size(); g++) L.n_g[g] += r.tokens_per_group[g];
  }
  L.tokens += r.T;
}

void RoutingRecorder::add_tokens(const int32_t* tokens, int N) {
  for (int i = 0; i < N; i++) {
    MOHGE_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "token {} outside the vocabulary", tokens[i]);
    occ_[tokens[i]] += 1;
  }
  tokens_ += N;
}

void RoutingRecorder::add(const Context& ctx, const int32_t* tokens, int N) {
  const Model& m = ctx.model();
  add_tokens(tokens, N);
  for (size_t s = 0; s < layers_.size(); s++) {
    auto r = m.ffn(layers_[s].layer).routing();
    MOHGE_CHECK(r, "layer {} is not a mixture-of-experts layer", layers_[s].layer);
    const Routing& last = r->last();
    MOHGE_CHECK(last.T == N, "layer {}: routing of {} tokens after a forward of {}", layers_[s].layer, last.T, N);
    add_layer((int)s, last, tokens);
  }
  active_sum_ += ctx.active_params_per_token() * N;
}

// ------------------------------------------------------------------------------- measurements
json analyze_routing(const RoutingRecorder& rec, const std::vector<double>& freq, int devices, const Tokenizer* tok) {
  const ModelConfig& c = rec.cfg();
  const MoeConfig& m = c.moe;
  const int E = m.num_experts, V = c.vocab_size, d = c.hidden_size;
  const bool two = m.router == RouterKind::two_level;
  const int Ng = two ? m.num_expert_groups : 0, N = two ? m.experts_per_group : 0;
  const auto& W = m.expert_widths;
  const auto& layers = rec.layers();
  const auto& occ = rec.occurrences();
  MOHGE_CHECK((int)freq.size() == V, "analysis: {} token frequencies for a vocabulary of {}", freq.size(), V);
  MOHGE_CHECK(devices >= 1, "analysis: devices = {} must be >= 1", devices);
  json out;

  // ---- model
  json jm = {{"ffn_kind", to_string(c.ffn_kind)}, {"moe_kind", to_string(m.kind)}, {"router", to_string(m.router)},
             {"num_layers", c.num_layers}, {"hidden_size", d}, {"vocab_size", V}, {"num_experts", E},
             {"expert_widths", W}, {"num_experts_per_tok", m.num_experts_per_tok},
             {"shared_expert_width", m.shared_expert_width}};
  json moe_layers = json::array();
  for (auto& L : layers) moe_layers.push_back(L.layer);
  jm["moe_layers"] = moe_layers;
  if (two) {
    jm["num_expert_groups"] = Ng, jm["experts_per_group"] = N, jm["topk_group"] = m.topk_group;
    std::vector<int> gw;
    for (int g = 0; g < Ng; g++) gw.push_back(m.group_width(g));
    jm["group_widths"] = gw;
    jm["gate_norm"] = to_string(m.gate_norm);
  }
  if (m.router == RouterKind::top_p) jm["top_p"] = m.top_p, jm["max_experts_per_tok"] = m.max_experts_per_tok;
  out["model"] = jm;

  // ---- 1, 2, 6: routing_metrics per layer
  std::vector<RoutingMetrics> rms;
  json jl = json::array(), per_layer = json::array();
  double sum_expert = 0, sum_layer = 0, sum_total_expert = 0;
  for (auto& L : layers) {
    RoutingMetrics rm = routing_metrics(m, L.n_e, L.n_g, L.tokens, d, devices);
    json j = rm;
    j["layer"] = L.layer;
    j["tokens_per_expert"] = L.n_e;
    if (two) j["tokens_per_group"] = L.n_g;
    jl.push_back(std::move(j));
    per_layer.push_back({{"layer", L.layer},
                         {"experts_per_token", rm.experts_per_token},
                         {"activated_expert_params", rm.activated_expert_params},
                         {"activated_layer_params", rm.activated_layer_params},
                         {"total_expert_params", rm.total_expert_params}});
    sum_expert += rm.activated_expert_params, sum_layer += rm.activated_layer_params;
    sum_total_expert += rm.total_expert_params;
    rms.push_back(std::move(rm));
  }
  out["layers"] = jl;
  out["activated_params"] = {{"tokens", rec.tokens()},
                             {"per_layer", per_layer},
                             {"experts_sum", sum_expert},
                             {"moe_layers_sum", sum_layer},
                             {"total_expert_params", sum_total_expert},
                             {"whole_model", rec.model_active_params()}};

  // ---- 6: device load summed over MoE layers (every layer has the same widths, so one placement)
  json pols = json::array();
  for (size_t p = 0; p < rms[0].placements.size(); p++) {
    const PlacementLoad& first = rms[0].placements[p];
    json jp = {{"policy", to_string(first.policy)}, {"ok", first.ok}};
    if (!first.ok) {
      jp["error"] = first.error;
      pols.push_back(std::move(jp));
      continue;
    }
    std::vector<double> load(devices, 0.0), tokshare(devices, 0.0);
    double assign = 0;
    json per = json::array();
    for (size_t l = 0; l < rms.size(); l++) {
      const PlacementLoad& pl = rms[l].placements[p];
      for (int r = 0; r < devices; r++) {
        load[r] += pl.report.device_load[r];
        tokshare[r] += pl.report.device_token_share[r] * rms[l].assignments;
      }
      assign += rms[l].assignments;
      per.push_back(pl.report.max_over_mean);
    }
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / devices;
    const double mx = *std::max_element(load.begin(), load.end());
    std::vector<double> rel(devices, 1.0);
    for (int r = 0; r < devices; r++) {
      if (mean > 0) rel[r] = load[r] / mean;
      if (assign > 0) tokshare[r] /= assign;
    }
    jp["placement"] = first.placement;
    jp["static_width"] = first.static_width;
    jp["device_load"] = load;
    jp["relative_load"] = rel;
    jp["device_token_share"] = tokshare;
    jp["max_over_mean"] = mean > 0 ? mx / mean : 1.0;
    jp["per_layer_max_over_mean"] = per;
    pols.push_back(std::move(jp));
  }
  out["device_load"] = {{"devices", devices},
                        {"scope", "sum over MoE layers of the FLOP-proportional load sum_e n_e*W_e per device"},
                        {"policies", pols}};

  // ---- 4: frequency buckets (log2 bins of the shard count), per layer
  std::vector<int> bucket_of(V, -1);
  int K = 0;
  for (int v = 0; v < V; v++)
    if (occ[v] > 0) {
      bucket_of[v] = frequency_bucket_of(std::max(freq[v], occ[v]));
      K = std::max(K, bucket_of[v] + 1);
    }
  std::vector<double> b_occ(K, 0), b_freq(K, 0), b_distinct(K, 0);
  std::vector<std::vector<int>> b_tokens(K);
  for (int v = 0; v < V; v++)
    if (bucket_of[v] >= 0) {
      const int b = bucket_of[v];
      b_occ[b] += occ[v], b_freq[b] += std::max(freq[v], occ[v]), b_distinct[b] += 1;
      b_tokens[b].push_back(v);
    }
  std::vector<int> kept;  // buckets with analyzed tokens
  for (int b = 0; b < K; b++)
    if (b_occ[b] > 0) kept.push_back(b);
  json jb = json::array();
  for (int b : kept) {
    auto& ts = b_tokens[b];
    std::sort(ts.begin(), ts.end(), [&](int a, int z) { return freq[a] != freq[z] ? freq[a] > freq[z] : a < z; });
    json ex = json::array();
    for (size_t i = 0; i < ts.size() && i < 6; i++) {
      json e = {{"id", ts[i]}, {"count", freq[ts[i]]}};
      if (tok) e["piece"] = piece_of(tok, ts[i]);
      ex.push_back(e);
    }
    jb.push_back({{"bucket", b},
                  {"label", bucket_label(b)},
                  {"count_min", 1L << b},
                  {"count_max", (1L << (b + 1)) - 1},
                  {"distinct_tokens", b_distinct[b]},
                  {"analyzed_tokens", b_occ[b]},
                  {"shard_tokens", b_freq[b]},
                  {"examples", ex}});
  }
  const size_t B = kept.size();
  std::vector<int> slot_of(K, -1);
  for (size_t i = 0; i < B; i++) slot_of[kept[i]] = (int)i;
  json fl = json::array();
  std::vector<double> avg_gate(B, 0), avg_assign(B, 0), avg_ept(B, 0), avg_params(B, 0);
  for (auto& L : layers) {
    std::vector<double> asg(B, 0), wsum(B, 0), gsum(B, 0), gwsum(B, 0);
    std::vector<std::vector<double>> share(B, std::vector<double>(E, 0.0));
    for (int e = 0; e < E; e++)
      for (int v = 0; v < V; v++) {
        const uint32_t n = L.count[(size_t)e * V + v];
        if (!n) continue;
        const int s = slot_of[bucket_of[v]];
        const double g = L.gate[(size_t)e * V + v];
        asg[s] += n, wsum[s] += (double)n * W[e], gsum[s] += g, gwsum[s] += g * W[e];
        share[s][e] += n;
      }
    json mwg = json::array(), mwa = json::array(), ept = json::array(), par = json::array(), sh = json::array();
    for (size_t s = 0; s < B; s++) {
      const double tokens = b_occ[kept[s]];
      const double g = gsum[s] > 0 ? gwsum[s] / gsum[s] : NAN, a = asg[s] > 0 ? wsum[s] / asg[s] : NAN;
      const double k = asg[s] / tokens, pa = 3.0 * d * wsum[s] / tokens;
      mwg.push_back(jnum(g)), mwa.push_back(jnum(a)), ept.push_back(k), par.push_back(pa);
      avg_gate[s] += g / layers.size(), avg_assign[s] += a / layers.size();
      avg_ept[s] += k / layers.size(), avg_params[s] += pa / layers.size();
      for (int e = 0; e < E; e++) share[s][e] = asg[s] > 0 ? share[s][e] / asg[s] : 0.0;
      sh.push_back(share[s]);
    }
    fl.push_back({{"layer", L.layer},
                  {"mean_width_gate", mwg},
                  {"mean_width_assign", mwa},
                  {"experts_per_token", ept},
                  {"activated_expert_params", par},
                  {"expert_share", sh}});
  }
  json avg = {{"mean_width_gate", json::array()}, {"mean_width_assign", json::array()},
              {"experts_per_token", avg_ept}, {"activated_expert_params", avg_params}};
  for (size_t s = 0; s < B; s++) avg["mean_width_gate"].push_back(jnum(avg_gate[s])), avg["mean_width_assign"].push_back(jnum(avg_assign[s]));
  out["frequency_buckets"] = {
      {"definition",
       "token ids bucketed by their number of occurrences c in the whole data shard: bucket k holds 2^k <= c < "
       "2^(k+1); per bucket, over the analyzed tokens"},
      {"weighting",
       "mean_width_gate = sum(w*W_e)/sum(w) over the bucket's assignments (gate-weighted); mean_width_assign = "
       "mean W_e over assignments; activated_expert_params = 3*d*sum(W_e)/tokens"},
      {"buckets", jb},
      {"layers", fl},
      {"mean_over_layers", avg}};

  // ---- token examples (mean over MoE layers of the gate-weighted expert width per token)
  {
    std::vector<double> gw(V, 0), g(V, 0), wsum(V, 0);
    for (auto& L : layers)
      for (int e = 0; e < E; e++)
        for (int v = 0; v < V; v++) {
          const size_t i = (size_t)e * V + v;
          if (!L.count[i]) continue;
          gw[v] += L.gate[i] * W[e], g[v] += L.gate[i], wsum[v] += (double)L.count[i] * W[e];
        }
    double min_occ = 5;
    auto qualifying = [&] {
      std::vector<int> q;
      for (int v = 0; v < V; v++)
        if (occ[v] >= min_occ && g[v] > 0) q.push_back(v);
      return q;
    };
    std::vector<int> q = qualifying();
    if (q.size() < 16) min_occ = 2, q = qualifying();
    if (q.size() < 16) min_occ = 1, q = qualifying();
    std::sort(q.begin(), q.end(), [&](int a, int z) {
      const double wa = gw[a] / g[a], wz = gw[z] / g[z];
      return wa != wz ? wa < wz : a < z;
    });
    const size_t n = std::min<size_t>(10, q.size() / 2);
    std::vector<int> pick(q.begin(), q.begin() + n);
    for (size_t i = 0; i < n; i++) pick.push_back(q[q.size() - n + i]);
    const auto& last = layers.back();
    json ex = json::array();
    for (size_t i = 0; i < pick.size(); i++) {
      const int v = pick[i];
      std::vector<double> share(E, 0.0);
      double tot = 0;
      for (int e = 0; e < E; e++) tot += last.count[(size_t)e * V + v];
      for (int e = 0; e < E; e++) share[e] = tot > 0 ? last.count[(size_t)e * V + v] / tot : 0.0;
      json j = {{"id", v},
                {"side", i < n ? "small" : "large"},
                {"count", freq[v]},
                {"analyzed", occ[v]},
                {"mean_width_gate", gw[v] / g[v]},
                {"activated_expert_params", 3.0 * d * wsum[v] / occ[v]},
                {"last_layer_expert_share", share}};
      if (tok) j["piece"] = piece_of(tok, v);
      ex.push_back(std::move(j));
    }
    out["token_examples"] = {
        {"definition",
         fmt::format("tokens with >= {} analyzed occurrences, sorted by their gate-weighted mean expert width (mean "
                     "over MoE layers); the {} lowest ('small') and {} highest ('large'); expert shares from the last "
                     "MoE layer (layer {})",
                     min_occ, n, n, last.layer)},
        {"min_occurrences", min_occ},
        {"layer", last.layer},
        {"tokens", ex}};
  }

  // ---- 5: Wasserstein distances on the log2(1 + frequency rank) axis
  {
    std::vector<int> order;
    for (int v = 0; v < V; v++)
      if (freq[v] > 0 || occ[v] > 0) order.push_back(v);
    std::sort(order.begin(), order.end(), [&](int a, int z) {
      const double fa = std::max(freq[a], occ[a]), fz = std::max(freq[z], occ[z]);
      return fa != fz ? fa > fz : a < z;
    });
    const size_t U = order.size();
    std::vector<double> x(U);
    for (size_t r = 0; r < U; r++) x[r] = std::log2(1.0 + r);
    json jw = json::array();
    std::vector<double> sum(E * E, 0.0), cnt(E * E, 0.0);
    json mean_x = json::array();
    for (auto& L : layers) {
      std::vector<std::vector<double>> dist(E, std::vector<double>(U, 0.0));
      json mx = json::array();
      for (int e = 0; e < E; e++) {
        double s = 0, sx = 0;
        for (size_t r = 0; r < U; r++) {
          dist[e][r] = L.count[(size_t)e * V + order[r]];
          s += dist[e][r], sx += dist[e][r] * x[r];
        }
        mx.push_back(jnum(s > 0 ? sx / s : NAN));
      }
      const auto mat = wasserstein_matrix(x, dist);
      for (size_t i = 0; i < mat.size(); i++)
        if (std::isfinite(mat[i])) sum[i] += mat[i], cnt[i] += 1;
      jw.push_back({{"layer", L.layer}, {"matrix", jmatrix(mat, E)}});
      mean_x.push_back({{"layer", L.layer}, {"mean_log2_rank", mx}});
    }
    std::vector<double> mean(E * E, NAN);
    double same = 0, nsame = 0, diff = 0, ndiff = 0;
    for (int a = 0; a < E; a++)
      for (int b = 0; b < E; b++) {
        const size_t i = (size_t)a * E + b;
        if (cnt[i] > 0) mean[i] = sum[i] / cnt[i];
        if (a < b && std::isfinite(mean[i])) (W[a] == W[b] ? (same += mean[i], nsame++) : (diff += mean[i], ndiff++));
      }
    out["wasserstein"] = {
        {"definition",
         "1-D Wasserstein-1 distance between the distributions of x = log2(1 + r) over the tokens each expert "
         "receives (one unit per assignment, gates ignored), r = the token's frequency rank in the data shard (0 = "
         "most frequent, ties by id): the mean over quantile levels of |log2((1+r_a)/(1+r_b))|"},
        {"support_tokens", U},
        {"layers", jw},
        {"mean", jmatrix(mean, E)},
        {"expert_mean_log2_rank", mean_x},
        {"same_width_pairs_mean", nsame > 0 ? jnum(same / nsame) : json(nullptr)},
        {"different_width_pairs_mean", ndiff > 0 ? jnum(diff / ndiff) : json(nullptr)}};
  }
  return out;
}

// ------------------------------------------------------------------------------- training log
json training_series(const std::string& log_path, const ModelConfig& cfg, int max_records) {
  std::ifstream in(log_path);
  MOHGE_CHECK(in.good(), "cannot read training log {}", log_path);
  std::map<int64_t, json> recs;
  std::map<int64_t, double> val;
  int64_t skipped = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      skipped++;  // e.g. a line being written by a running job
      continue;
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      skipped++;
      continue;
    }
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("val_loss")) val[step] = num(j["val_loss"]);
    if (j.contains("routing") && j["routing"].is_object()) recs[step] = std::move(j);  // a resumed run's last word
  }
  json out = {{"log", log_path}, {"skipped_lines", skipped}};
  json jv = {{"step", json::array()}, {"val_loss", json::array()}};
  for (auto& [s, v] : val) jv["step"].push_back(s), jv["val_loss"].push_back(jnum(v));
  out["val"] = jv;
  if (recs.empty()) {
    out["note"] = fmt::format("{} has no step records with routing metrics", log_path);
    return out;
  }
  std::vector<int> moe_layers;
  for (int l = 0; l < cfg.num_layers; l++)
    if (cfg.layer_is_moe(l)) moe_layers.push_back(l);
  const int E = cfg.moe.num_experts;
  auto matches = [&](const json& r) {
    const json& ls = r["routing"].value("layers", json::array());
    if (!ls.is_array() || ls.size() != moe_layers.size()) return false;
    for (size_t i = 0; i < ls.size(); i++)
      if (ls[i].value("layer", -1) != moe_layers[i] || !ls[i].contains("expert_share") ||
          ls[i]["expert_share"].size() != (size_t)E)
        return false;
    return true;
  };
  std::vector<const json*> all;
  int64_t mismatched = 0;
  for (auto& [s, r] : recs) (matches(r) ? all.push_back(&r) : (void)mismatched++);
  if (all.empty()) {
    out["note"] = fmt::format("{}: the routing records do not match this model ({} MoE layers of {} experts)",
                              log_path, moe_layers.size(), E);
    return out;
  }
  // even subsample, first and last kept
  std::vector<const json*> sel;
  const size_t M = all.size(), Kmax = (size_t)std::max(2, max_records);
  if (M <= Kmax)
    sel = all;
  else
    for (size_t i = 0; i < Kmax; i++) sel.push_back(all[(size_t)std::llround((double)i * (M - 1) / (Kmax - 1))]);
  out["records"] = M;
  out["sampled"] = sel.size();
  out["mismatched_records"] = mismatched;
  json steps = json::array(), act = json::array(), ffn = json::array(), exp_sum = json::array(), loss = json::array();
  std::vector<json> lay(moe_layers.size());
  for (size_t i = 0; i < moe_layers.size(); i++)
    lay[i] = {{"layer", moe_layers[i]}, {"activated_expert_params", json::array()}, {"expert_share", json::array()},
              {"group_share", json::array()}, {"max_vio", json::array()}, {"max_over_mean", json::object()}};
  int log_devices = 0;
  for (const json* r : sel) {
    const json& R = (*r)["routing"];
    steps.push_back((*r)["step"]);
    loss.push_back(jnum(num(r->value("lm_loss", json()))));
    act.push_back(jnum(num(R.value("active_params_per_token", json()))));
    ffn.push_back(jnum(num(R.value("ffn_active_params_per_token", json()))));
    double es = 0;
    const json& ls = R["layers"];
    for (size_t i = 0; i < ls.size(); i++) {
      const json& L = ls[i];
      const double a = num(L.value("activated_expert_params", json()));
      es += a;
      lay[i]["activated_expert_params"].push_back(jnum(a));
      lay[i]["expert_share"].push_back(L["expert_share"]);
      lay[i]["group_share"].push_back(L.value("group_share", json::array()));
      lay[i]["max_vio"].push_back(jnum(num(L.value("max_vio", json()))));
      log_devices = L.value("devices", log_devices);
      for (auto& p : L.value("placements", json::array())) {
        const std::string pol = p.value("policy", "?");
        double v = NAN;
        if (p.value("ok", false) && p.contains("load")) v = num(p["load"].value("max_over_mean", json()));
        auto& series = lay[i]["max_over_mean"][pol];
        if (series.is_null()) series = json::array();
        series.push_back(jnum(v));
      }
    }
    exp_sum.push_back(jnum(es));
  }
  out["devices"] = log_devices;
  out["step"] = steps;
  out["lm_loss"] = loss;
  out["active_params_per_token"] = act;
  out["ffn_active_params_per_token"] = ffn;
  out["experts_active_params"] = exp_sum;
  out["layers"] = lay;
  return out;
}

// --------------------------------------------------------------------------------------- CSVs
namespace {

std::string csv_num(const json& j) {
  if (!j.is_number()) return "";
  return fmt::format("{}", j.get<double>());
}

std::string csv_str(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string r = "\"";
  for (char c : s) r += c == '"' ? std::string("\"\"") : std::string(1, c);
  return r + "\"";
}

}  // namespace

std::vector<std::string> write_analysis_csvs(const std::string& dir, const json& a) {
  std::vector<std::string> files;
  auto put = [&](const std::string& name, const std::string& text) {
    write_file_atomic(dir + "/" + name, text);
    files.push_back(name);
  };
  const json& model = a.at("model");
  const auto W = model.at("expert_widths").get<std::vector<int>>();
  const int E = (int)W.size();
  const int N = model.value("experts_per_group", 0);

  std::string s = "layer,tokens,experts_per_token,activated_expert_params,activated_layer_params,total_expert_params\n";
  for (auto& L : a.at("layers"))
    s += fmt::format("{},{},{},{},{},{}\n", L.at("layer").get<int>(), csv_num(L["tokens"]), csv_num(L["experts_per_token"]),
                     csv_num(L["activated_expert_params"]), csv_num(L["activated_layer_params"]),
                     csv_num(L["total_expert_params"]));
  const json& ap = a.at("activated_params");
  s += fmt::format("all_moe_layers,{},,{},{},{}\n", csv_num(ap["tokens"]), csv_num(ap["experts_sum"]),
                   csv_num(ap["moe_layers_sum"]), csv_num(ap["total_expert_params"]));
  s += fmt::format("whole_model,{},,,{},{}\n", csv_num(ap["tokens"]), csv_num(ap["whole_model"]),
                   csv_num(model.value("total_params", json())));
  put("activated_params.csv", s);

  s = "layer,expert,group,width,assignments,share\n";
  for (auto& L : a.at("layers"))
    for (int e = 0; e < E; e++)
      s += fmt::format("{},{},{},{},{},{}\n", L.at("layer").get<int>(), e, N > 0 ? std::to_string(e / N) : "", W[e],
                       csv_num(L["tokens_per_expert"][e]), csv_num(L["expert_share"][e]));
  put("expert_share.csv", s);

  if (model.contains("group_widths")) {
    const auto GW = model["group_widths"].get<std::vector<int>>();
    s = "layer,group,width,share,token_frac\n";
    for (auto& L : a.at("layers"))
      for (size_t g = 0; g < GW.size(); g++)
        s += fmt::format("{},{},{},{},{}\n", L.at("layer").get<int>(), g, GW[g], csv_num(L["group_share"][g]),
                         csv_num(L["group_token_frac"][g]));
    put("group_share.csv", s);
  }

  s = "scope,policy,ok,device,static_width,load,load_over_mean,token_share,max_over_mean,error\n";
  for (auto& p : a.at("device_load").at("policies")) {
    const std::string pol = p.at("policy");
    if (!p.value("ok", false)) {
      s += fmt::format("all_moe_layers,{},false,,,,,,,{}\n", pol, csv_str(p.value("error", "")));
      continue;
    }
    for (size_t r = 0; r < p["device_load"].size(); r++)
      s += fmt::format("all_moe_layers,{},true,{},{},{},{},{},{},\n", pol, r, csv_num(p["static_width"][r]),
                       csv_num(p["device_load"][r]), csv_num(p["relative_load"][r]), csv_num(p["device_token_share"][r]),
                       csv_num(p["max_over_mean"]));
  }
  for (auto& L : a.at("layers"))
    for (auto& p : L.at("placements")) {
      const std::string pol = p.at("policy");
      if (!p.value("ok", false)) continue;
      const json& ld = p["load"];
      for (size_t r = 0; r < ld["device_load"].size(); r++)
        s += fmt::format("layer {},{},true,{},{},{},,{},{},\n", L.at("layer").get<int>(), pol, r,
                         csv_num(p["static_width"][r]), csv_num(ld["device_load"][r]),
                         csv_num(ld["device_token_share"][r]), csv_num(ld["max_over_mean"]));
    }
  put("device_load.csv", s);

  const json& fb = a.at("frequency_buckets");
  s = "layer,bucket,count_min,count_max,distinct_tokens,analyzed_tokens,mean_width_gate,mean_width_assign,"
      "experts_per_token,activated_expert_params\n";
  auto bucket_rows = [&](const std::string& layer, const json& L) {
    for (size_t i = 0; i < fb["buckets"].size(); i++) {
      const json& b = fb["buckets"][i];
      s += fmt::format("{},{},{},{},{},{},{},{},{},{}\n", layer, b["bucket"].get<int>(), csv_num(b["count_min"]),
                       csv_num(b["count_max"]), csv_num(b["distinct_tokens"]), csv_num(b["analyzed_tokens"]),
                       csv_num(L["mean_width_gate"][i]), csv_num(L["mean_width_assign"][i]),
                       csv_num(L["experts_per_token"][i]), csv_num(L["activated_expert_params"][i]));
    }
  };
  for (auto& L : fb["layers"]) bucket_rows(std::to_string(L["layer"].get<int>()), L);
  bucket_rows("mean", fb["mean_over_layers"]);
  put("frequency_buckets.csv", s);

  s = "layer,bucket,expert,width,share\n";
  for (auto& L : fb["layers"])
    for (size_t i = 0; i < fb["buckets"].size(); i++)
      for (int e = 0; e < E; e++)
        s += fmt::format("{},{},{},{},{}\n", L["layer"].get<int>(), fb["buckets"][i]["bucket"].get<int>(), e, W[e],
                         csv_num(L["expert_share"][i][e]));
  put("bucket_expert_share.csv", s);

  s = "side,id,piece,count,analyzed,mean_width_gate,activated_expert_params\n";
  for (auto& t : a.at("token_examples").at("tokens"))
    s += fmt::format("{},{},{},{},{},{},{}\n", t["side"].get<std::string>(), t["id"].get<int>(),
                     csv_str(t.value("piece", "")), csv_num(t["count"]), csv_num(t["analyzed"]),
                     csv_num(t["mean_width_gate"]), csv_num(t["activated_expert_params"]));
  put("token_examples.csv", s);

  const json& w = a.at("wasserstein");
  s = "layer,expert_a,expert_b,width_a,width_b,w1\n";
  auto wrows = [&](const std::string& layer, const json& m) {
    for (int i = 0; i < E; i++)
      for (int k = 0; k < E; k++) s += fmt::format("{},{},{},{},{},{}\n", layer, i, k, W[i], W[k], csv_num(m[i][k]));
  };
  for (auto& L : w["layers"]) wrows(std::to_string(L["layer"].get<int>()), L["matrix"]);
  wrows("mean", w["mean"]);
  put("wasserstein.csv", s);

  const json& tr = a.value("training", json::object());
  if (tr.contains("step")) {
    s = "step,lm_loss,active_params_per_token,ffn_active_params_per_token,experts_active_params\n";
    for (size_t i = 0; i < tr["step"].size(); i++)
      s += fmt::format("{},{},{},{},{}\n", tr["step"][i].get<int64_t>(), csv_num(tr["lm_loss"][i]),
                       csv_num(tr["active_params_per_token"][i]), csv_num(tr["ffn_active_params_per_token"][i]),
                       csv_num(tr["experts_active_params"][i]));
    put("training_params.csv", s);
    s = "step,layer,expert,width,share\n";
    std::string g = "step,layer,group,share\n", l = "step,layer,policy,max_over_mean,max_vio\n";
    for (auto& L : tr["layers"]) {
      const int layer = L["layer"].get<int>();
      for (size_t i = 0; i < tr["step"].size(); i++) {
        const int64_t st = tr["step"][i].get<int64_t>();
        for (int e = 0; e < E; e++)
          s += fmt::format("{},{},{},{},{}\n", st, layer, e, W[e], csv_num(L["expert_share"][i][e]));
        for (size_t k = 0; k < L["group_share"][i].size(); k++)
          g += fmt::format("{},{},{},{}\n", st, layer, k, csv_num(L["group_share"][i][k]));
        for (auto& [pol, series] : L["max_over_mean"].items())
          l += fmt::format("{},{},{},{},{}\n", st, layer, pol, csv_num(series[i]), csv_num(L["max_vio"][i]));
      }
    }
    put("training_expert_share.csv", s);
    if (model.contains("group_widths")) put("training_group_share.csv", g);
    put("training_load.csv", l);
  }
  return files;
}

// ------------------------------------------------------------------------------------ summary
std::string analysis_summary(const json& a) {
  const json& ap = a.at("activated_params");
  const json& model = a.at("model");
  std::string s;
  s += fmt::format("analyzed {} tokens of {} with {}\n", (long)num(ap["tokens"]), a.value("data", "?"),
                   a.value("checkpoint", "?"));
  const double total = num(model.value("total_params", json()));
  s += fmt::format("activated params/token: whole model {:.4g}{}; routed experts {:.4g} (sum over {} MoE layers, of "
                   "{:.4g} expert params); MoE layers incl. shared expert + router {:.4g}\n",
                   num(ap["whole_model"]),
                   std::isfinite(total) ? fmt::format(" of {:.4g} ({:.1f}%)", total, 100 * num(ap["whole_model"]) / total)
                                        : "",
                   num(ap["experts_sum"]), a["layers"].size(), num(ap["total_expert_params"]), num(ap["moe_layers_sum"]));
  std::string per;
  for (auto& L : a["layers"])
    per += fmt::format("{}L{} {:.4g} ({:.2f} experts)", per.empty() ? "" : ", ", L["layer"].get<int>(),
                       num(L["activated_expert_params"]), num(L["experts_per_token"]));
  s += "  per layer (routed experts): " + per + "\n";
  const json& dl = a.at("device_load");
  std::string loads;
  for (auto& p : dl["policies"])
    loads += fmt::format("{}{} {}", loads.empty() ? "" : ", ", p["policy"].get<std::string>(),
                         p.value("ok", false) ? fmt::format("{:.3f}", num(p["max_over_mean"])) : "refused");
  s += fmt::format("device load max/mean (D={}, FLOP-weighted, all MoE layers): {}\n", dl["devices"].get<int>(), loads);
  const json& fb = a.at("frequency_buckets");
  const json& mw = fb["mean_over_layers"]["mean_width_gate"];
  if (mw.size() >= 2)
    s += fmt::format("mean expert width (gate-weighted, mean over layers): rarest tokens (seen {}x in the shard) "
                     "{:.1f}, most frequent ({}x) {:.1f}\n",
                     fb["buckets"].front()["label"].get<std::string>(), num(mw.front()),
                     fb["buckets"].back()["label"].get<std::string>(), num(mw.back()));
  const json& w = a.at("wasserstein");
  if (w["same_width_pairs_mean"].is_number() && w["different_width_pairs_mean"].is_number())
    s += fmt::format("Wasserstein (log2 rank): same-width expert pairs {:.3f}, different-width pairs {:.3f}\n",
                     num(w["same_width_pairs_mean"]), num(w["different_width_pairs_mean"]));
  return s;
}

// --------------------------------------------------------------------------- the whole command
namespace {

int64_t checkpoint_step(const std::string& dir) {
  const std::string st = dir + "/trainer_state.json";
  if (fs::exists(st)) try {
      json j = json::parse(read_file_text(st));
      if (j.contains("step") && j["step"].is_number()) return j["step"].get<int64_t>();
    } catch (const std::exception&) {
    }
  std::smatch m;
  const std::string name = fs::path(dir).filename().string();
  if (std::regex_match(name, m, std::regex("step_0*(\\d+)"))) return std::stoll(m[1]);
  return -1;
}

}  // namespace

AnalyzeResult analyze_checkpoint(const AnalyzeOptions& opt) {
  MOHGE_CHECK(opt.batches >= 1 && opt.batch_size >= 1 && opt.seq_len >= 0 && opt.devices >= 1,
              "analyze: batches, batch size and devices must be >= 1 (got {}, {}, {})", opt.batches, opt.batch_size,
              opt.devices);
  const std::string dir = checkpoint_resolve(opt.checkpoint);
  {
    // a dense model fails here, before its weights are read
    ModelConfig c = model_config_from_json(checkpoint_config_json(dir), dir + "/config.json");
    RoutingRecorder probe_check(c);  // throws "no MoE layers to analyze"
    (void)probe_check;
    // every placement gives each device E/D experts: more devices than experts cannot be placed
    MOHGE_CHECK(opt.devices <= c.moe.num_experts, "analyze: --devices {} exceeds the model's {} experts (D must divide E)",
                opt.devices, c.moe.num_experts);
  }
  MOHGE_CHECK(!opt.data.empty(), "analyze: no data given (--data SHARD_OR_DIR)");
  MOHGE_CHECK(fs::exists(opt.data), "data {} does not exist", opt.data);
  const bool data_dir = fs::is_directory(opt.data);
  const std::string shard = data_dir ? (fs::path(opt.data) / "val.bin").string() : opt.data;
  MOHGE_CHECK(fs::exists(shard), "{}: prepared data dir has no val.bin", opt.data);

  auto model = model_load(dir);
  const ModelConfig& cfg = model->cfg;
  auto ts = std::make_shared<TokenShard>(shard);
  MOHGE_CHECK(ts->vocab_size() <= cfg.vocab_size, "{}: vocab {} exceeds the model's {}", shard, ts->vocab_size(),
              cfg.vocab_size);
  if (fs::is_regular_file(dir + "/tokenizer.model"))  // the run's tokenizer must be the shard's
    check_tokenizer_matches_shard(Tokenizer::load(dir + "/tokenizer.model"), dir + "/tokenizer.model", *ts);
  const int T = opt.seq_len > 0 ? opt.seq_len : cfg.max_seq_len;
  MOHGE_CHECK(ts->size() >= (uint64_t)T + 1, "{}: {} tokens, fewer than one window of {} + 1 (try --seq-len)", shard,
              ts->size(), T);
  DataLoader loader(ts, opt.batch_size, T, 0);
  const int64_t step = checkpoint_step(dir);

  RoutingRecorder rec(cfg);
  Context ctx(*model, Mode::eval);
  std::vector<int32_t> in((size_t)opt.batch_size * T), tg((size_t)opt.batch_size * T);
  int rows = 0, batches = 0;
  double loss_sum = 0;
  while (batches < opt.batches && loader.next_eval_batch(in.data(), tg.data(), &rows)) {
    loss_sum += model->forward(ctx, in.data(), tg.data(), rows, T, std::max<int64_t>(step, 0)) * rows * T;
    rec.add(ctx, in.data(), rows * T);
    batches++;
  }
  MOHGE_CHECK(rec.tokens() > 0, "{}: no evaluation window of {} tokens", shard, T + 1);

  const std::vector<double> freq = token_frequencies(shard, cfg.vocab_size);
  std::optional<Tokenizer> tok;
  std::string tok_note;
  for (const std::string& p : {dir + "/tokenizer.model", data_dir ? (fs::path(opt.data) / "tokenizer.model").string() : ""})
    if (!tok && !p.empty() && fs::exists(p)) try {
        tok = Tokenizer::load(p);
      } catch (const Error& e) {
        tok_note = e.what();
      }

  json a = analyze_routing(rec, freq, opt.devices, tok ? &*tok : nullptr);
  a["checkpoint"] = dir;
  a["data"] = shard;
  a["step"] = step >= 0 ? json(step) : json(nullptr);
  a["batches"] = batches;
  a["batch_size"] = opt.batch_size;
  a["seq_len"] = T;
  a["lm_loss"] = require_finite(loss_sum / rec.tokens(), "analyze: the LM loss");
  a["model"]["total_params"] = (double)model->params.count();
  a["tokenizer"] = tok ? json(tok->source()) : json(nullptr);
  json notes = json::array();
  if (!tok) notes.push_back(tok_note.empty() ? "no tokenizer.model in the checkpoint or data dir: tokens shown by id"
                                             : "tokenizer not loaded: " + tok_note);

  // training log
  std::string log = opt.log;
  if (log.empty()) {
    const fs::path p = fs::path(dir);
    if (p.parent_path().filename() == "checkpoints") {
      const fs::path cand = p.parent_path().parent_path() / "log.jsonl";
      if (fs::exists(cand)) log = cand.string();
    }
  } else {
    MOHGE_CHECK(fs::exists(log), "--log {} does not exist", log);
  }
  if (log.empty()) {
    a["training"] = {{"note", "no training log found (looked for <run>/log.jsonl beside checkpoints/; pass --log)"}};
  } else {
    a["training"] = training_series(log, cfg, opt.max_log_records);
  }
  a["notes"] = notes;

  AnalyzeResult res;
  res.out_dir = opt.out_dir.empty() ? (fs::path(dir) / "analysis").string() : opt.out_dir;
  std::error_code ec;
  fs::create_directories(res.out_dir, ec);
  MOHGE_CHECK(!ec && fs::is_directory(res.out_dir), "cannot create output directory {}: {}", res.out_dir, ec.message());
  RenderedReport rep = render_report_html(a);
  a["charts"] = rep.chart_ids;
  res.files = write_analysis_csvs(res.out_dir, a);
  res.report_html = (fs::path(res.out_dir) / "report.html").string();
  res.analysis_json = (fs::path(res.out_dir) / "analysis.json").string();
  write_file_atomic(res.report_html, rep.html);
  write_file_atomic(res.analysis_json, a.dump(1) + "\n");
  res.files.push_back("report.html");
  res.files.push_back("analysis.json");
  res.summary = analysis_summary(a) + fmt::format("wrote {} ({} files)\n", res.report_html, res.files.size());
  res.analysis = std::move(a);
  return res;
}

}  // namespace mohge
