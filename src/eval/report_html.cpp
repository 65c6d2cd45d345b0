// defines: render_report_html (report_html.h)
#include "eval/report_html.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "eval/svg_chart.h"

using nlohmann::json;

namespace mohge {

namespace {

using svg::escape;
using svg::fmt_num;

double num(const json& j) { return j.is_number() ? j.get<double>() : NAN; }

std::vector<double> nums(const json& j) {
  std::vector<double> v;
  if (j.is_array())
    for (auto& x : j) v.push_back(num(x));
  return v;
}

std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:.1f}%", 100 * v) : "\u2013"; }

// Builds the page and remembers every chart id.
struct Page {
  std::string body;
  std::vector<std::string> ids;

  void chart(const std::string& svg_text, const std::string& id, const std::string& caption = "") {
    ids.push_back(id);
    body += "<figure>" + svg_text;
    if (!caption.empty()) body += "<figcaption>" + escape(caption) + "</figcaption>";
    body += "</figure>\n";
  }
  void h2(const std::string& id, const std::string& t) { body += fmt::format("<h2 id=\"{}\">{}</h2>\n", id, escape(t)); }
  void h3(const std::string& t) { body += "<h3>" + escape(t) + "</h3>\n"; }
  void p(const std::string& t, const std::string& cls = "") {
    body += (cls.empty() ? "<p>" : "<p class=\"" + cls + "\">") + escape(t) + "</p>\n";
  }
  void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    body += "<table><thead><tr>";
    for (auto& h : head) body += "<th>" + escape(h) + "</th>";
    body += "</tr></thead><tbody>\n";
    for (auto& r : rows) {
      body += "<tr>";
      for (auto& c : r) body += "<td>" + escape(c) + "</td>";
      body += "</tr>\n";
    }
    body += "</tbody></table>\n";
  }
  void open_grid() { body += "<div class=\"grid\">\n"; }
  void close_grid() { body += "</div>\n"; }
};

struct Ctx {
  const json& a;
  std::vector<int> W;                  // expert widths
  std::vector<std::string> wcolor;     // colour per expert, by width
  std::vector<std::string> lcolor;     // line colour per expert: by width, or distinct when all widths are equal
  bool homogeneous = false;            // one width for every expert
  std::vector<std::string> names;      // "g1.2" / "e5"
  int E = 0, Ng = 0, N = 0;
  std::vector<int> GW;                 // group widths (two-level)
};

std::string expert_name(int e, int N) { return N > 0 ? fmt::format("g{}.{}", e / N, e % N) : fmt::format("e{}", e); }

// ----------------------------------------------------------------------------- sections
void section_header(Page& pg, const Ctx& c) {
  const json& a = c.a;
  const json& m = a["model"];
  std::string kind = m.value("ffn_kind", "?");
  std::string layout = fmt::format("{} experts", c.E);
  if (c.Ng > 0) layout = fmt::format("{} groups \u00d7 {} experts (group widths {})", c.Ng, c.N, m["group_widths"].dump());
  else layout += fmt::format(" (widths {})", m["expert_widths"].dump());
  std::string routing = m.value("router", "?");
  if (routing == "top_p") routing += fmt::format(" p={}", num(m.value("top_p", json())));
  else routing += fmt::format(" K={}", m.value("num_experts_per_tok", 0));
  if (c.Ng > 0) routing += fmt::format(", top-{} groups", m.value("topk_group", 0));
  pg.body += "<h1>Routing analysis</h1>\n<table class=\"meta\"><tbody>\n";
  auto row = [&](const std::string& k, const std::string& v) {
    pg.body += "<tr><th>" + escape(k) + "</th><td>" + escape(v) + "</td></tr>\n";
  };
  row("checkpoint", a.value("checkpoint", "?") + (a["step"].is_number() ? fmt::format(" (step {})", a["step"].get<int64_t>()) : ""));
  row("model", fmt::format("{}: {} layers (MoE layers {}), d={}, vocab {}, {} parameters", kind, m.value("num_layers", 0),
                           m["moe_layers"].dump(), m.value("hidden_size", 0), m.value("vocab_size", 0),
                           fmt_num(num(m.value("total_params", json())))));
  row("experts", layout + (m.value("shared_expert_width", 0) > 0 ? fmt::format(", shared expert width {}", m["shared_expert_width"].get<int>()) : ""));
  row("routing", routing);
  row("data", fmt::format("{}: {} tokens analyzed ({} batches of {} \u00d7 {}), LM loss on them {:.4f}", a.value("data", "?"),
                          fmt_num(num(a["activated_params"]["tokens"])), a.value("batches", 0), a.value("batch_size", 0),
                          a.value("seq_len", 0), num(a.value("lm_loss", json()))));
  for (auto& n : a.value("notes", json::array())) row("note", n.get<std::string>());
  pg.body += "</tbody></table>\n";
  pg.body +=
      "<nav><a href=\"#activated\">1 activated parameters</a> \u00b7 <a href=\"#shares\">2 expert / group shares</a> "
      "\u00b7 <a href=\"#training\">3 over training</a> \u00b7 <a href=\"#frequency\">4 token frequency vs expert "
      "width</a> \u00b7 <a href=\"#wasserstein\">5 Wasserstein distances</a> \u00b7 <a href=\"#placement\">6 device "
      "load</a> \u00b7 <a href=\"#definitions\">definitions</a></nav>\n";
}

void section_activated(Page& pg, const Ctx& c) {
  const json& ap = c.a["activated_params"];
  pg.h2("activated", "1. Activated parameters per token");
  const double total = num(c.a["model"].value("total_params", json()));
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"whole model", fmt_num(num(ap["whole_model"])), fmt_num(total), pct(num(ap["whole_model"]) / total), ""});
  rows.push_back({"routed experts, all MoE layers", fmt_num(num(ap["experts_sum"])), fmt_num(num(ap["total_expert_params"])),
                  pct(num(ap["experts_sum"]) / num(ap["total_expert_params"])), ""});
  rows.push_back({"MoE layers (+ shared expert, router)", fmt_num(num(ap["moe_layers_sum"])), "", "", ""});
  for (auto& L : c.a["layers"])
    rows.push_back({fmt::format("layer {} routed experts", L["layer"].get<int>()), fmt_num(num(L["activated_expert_params"])),
                    fmt_num(num(L["total_expert_params"])),
                    pct(num(L["activated_expert_params"]) / num(L["total_expert_params"])),
                    fmt::format("{:.3f}", num(L["experts_per_token"]))});
  pg.table({"scope", "activated / token", "total", "activated share", "experts / token"}, rows);

  svg::GroupedBarChart ch;
  ch.f = {"activated-params", "Activated parameters per token, by MoE layer", "MoE layer", "parameters / token", 1100, 300, {}};
  ch.series = {"routed experts", "+ shared expert & router"};
  ch.colors = {svg::palette(0), svg::palette(1)};
  for (auto& L : c.a["layers"]) {
    ch.groups.push_back(fmt::format("layer {}", L["layer"].get<int>()));
    ch.values.push_back({num(L["activated_expert_params"]), num(L["activated_layer_params"])});
  }
  ch.value_labels = true;
  pg.chart(svg::grouped_bar_chart(ch), ch.f.id, "Mean over the analyzed tokens of the parameters each token uses.");
}

void section_shares(Page& pg, const Ctx& c) {
  pg.h2("shares", "2. Activation share of each expert and group");
  pg.p("Share of expert e = n_e / \u03a3 n (assignments routed to e over all assignments, per layer); the dashed line is "
       "the uniform share 1/E. Bars are coloured by expert width.");
  // overview heatmap: layers × experts
  svg::Heatmap hm;
  hm.f = {"expert-share-heatmap", "Expert activation share, all MoE layers", "expert", "", 1100,
          140 + 40 * (int)c.a["layers"].size(), {}};
  for (auto& L : c.a["layers"]) {
    hm.row_labels.push_back(fmt::format("layer {}", L["layer"].get<int>()));
    for (double v : nums(L["expert_share"])) hm.values.push_back(v);
  }
  hm.col_labels = c.names;
  hm.col_colors = c.wcolor;
  hm.scale_label = "share";
  hm.block = c.N;
  hm.annotate = c.E <= 16;
  pg.chart(svg::heatmap(hm), hm.f.id);

  pg.open_grid();
  for (auto& L : c.a["layers"]) {
    const int l = L["layer"].get<int>();
    svg::BarChart b;
    b.f = {fmt::format("expert-share-L{}", l), fmt::format("Layer {}: expert activation share (MaxVio {:.2f})", l, num(L["max_vio"])),
           "expert", "share of assignments", 545, 280, svg::width_legend(c.W)};
    b.labels = c.names;
    b.values = nums(L["expert_share"]);
    b.colors = c.wcolor;
    for (int e = 0; e < c.E; e++)
      b.tooltips.push_back(fmt::format("{} (width {}): {:.4f}", c.names[e], c.W[e], b.values[e]));
    b.ref_line = 1.0 / c.E;
    b.ref_label = "uniform";
    pg.chart(svg::bar_chart(b), b.f.id);
  }
  pg.close_grid();

  if (c.Ng > 0) {
    svg::GroupedBarChart g;
    g.f = {"group-share", "Group activation share per layer (share of assignments)", "MoE layer", "share", 1100, 300, {}};
    const auto gcol = svg::width_colors(c.GW);
    for (int k = 0; k < c.Ng; k++) {
      g.series.push_back(fmt::format("group {} (width {})", k, c.GW[k]));
      g.colors.push_back(gcol[k]);
    }
    for (auto& L : c.a["layers"]) {
      g.groups.push_back(fmt::format("layer {}", L["layer"].get<int>()));
      g.values.push_back(nums(L["group_share"]));
    }
    g.ref_line = 1.0 / c.Ng;
    g.ref_label = "uniform";
    g.value_labels = c.Ng * (int)c.a["layers"].size() <= 24;
    pg.chart(svg::grouped_bar_chart(g), g.f.id,
             "Group share = \u03a3_i n_{g,i} / \u03a3 n. The fraction of tokens whose selected groups include g is in "
             "analysis.json (group_token_frac).");
  }
}

void section_training(Page& pg, const Ctx& c) {
  pg.h2("training", "3. Over training (from the run's step log)");
  const json& tr = c.a.value("training", json::object());
  if (tr.contains("note") || !tr.contains("step")) {
    pg.p(tr.value("note", std::string("no training log")), "note");
    return;
  }
  pg.p(fmt::format("{}: {} step records with routing metrics{}{}. Routing metrics in the log are per optimizer step "
                   "(all micro-batches of the step, training data).",
                   tr.value("log", "?"), tr.value("records", 0),
                   tr.value("sampled", 0) < tr.value("records", 0) ? fmt::format(", {} shown (evenly sampled)", tr["sampled"].get<int>()) : "",
                   tr.value("skipped_lines", 0) > 0 ? fmt::format("; {} unreadable lines skipped", tr["skipped_lines"].get<int>()) : ""));
  const std::vector<double> steps = nums(tr["step"]);
  std::optional<double> marker;
  if (c.a["step"].is_number()) marker = num(c.a["step"]);
  const std::string mlabel = marker ? fmt::format("checkpoint (step {})", (long)*marker) : "";

  svg::LineChart lc;
  lc.f = {"train-active-params", "Activated parameters per token over training", "step", "parameters / token", 1100, 300, {}};
  lc.series = {{"whole model", svg::palette(0), steps, nums(tr["active_params_per_token"])},
               {"all FFNs (dense + MoE)", svg::palette(1), steps, nums(tr["ffn_active_params_per_token"])},
               {"routed experts (sum over MoE layers)", svg::palette(2), steps, nums(tr["experts_active_params"])}};
  lc.x_marker = marker, lc.x_marker_label = mlabel;
  pg.chart(svg::line_chart(lc), lc.f.id);

  // per-step shares and loads are noisy: centred moving average over `win` records (raw values in the CSVs)
  const int win = steps.size() > 60 ? (int)std::lround(steps.size() / 30.0) | 1 : 1;
  auto smooth = [&](const std::vector<double>& y) {
    if (win <= 1) return y;
    std::vector<double> out(y.size(), NAN);
    for (size_t i = 0; i < y.size(); i++) {
      double s = 0;
      int n = 0;
      for (int k = -win / 2; k <= win / 2; k++) {
        const long j = (long)i + k;
        if (j >= 0 && j < (long)y.size() && std::isfinite(y[j])) s += y[j], n++;
      }
      if (n) out[i] = s / n;
    }
    return out;
  };
  const std::string smooth_note = win > 1 ? fmt::format(" Centred moving average over {} log records.", win) : "";

  const json& last = tr["layers"].back();
  const int ll = last["layer"].get<int>();
  svg::LineChart es;
  es.f = {"train-expert-share", fmt::format("Layer {}: expert activation share over training", ll), "step",
          "share of assignments", 1100, 320, {}};
  for (int e = 0; e < c.E; e++) {
    std::vector<double> y;
    for (auto& row : last["expert_share"]) y.push_back(num(row[e]));
    es.series.push_back({fmt::format("{} (width {})", c.names[e], c.W[e]), c.lcolor[e], steps, smooth(y), 1.3});
  }
  es.legend_from_series = c.homogeneous;
  if (!c.homogeneous) es.f.legend = svg::width_legend(c.W);
  es.x_marker = marker, es.x_marker_label = mlabel;
  pg.chart(svg::line_chart(es), es.f.id,
           std::string(c.homogeneous ? "One line per expert." : "One line per expert, coloured by width.") + smooth_note);

  if (c.Ng > 0 && !last["group_share"].empty() && !last["group_share"][0].empty()) {
    svg::LineChart gs;
    gs.f = {"train-group-share", fmt::format("Layer {}: group activation share over training", ll), "step", "share",
            1100, 300, {}};
    const auto gcol = svg::width_colors(c.GW);
    for (int g = 0; g < c.Ng; g++) {
      std::vector<double> y;
      for (auto& row : last["group_share"]) y.push_back(row.size() > (size_t)g ? num(row[g]) : NAN);
      gs.series.push_back({fmt::format("group {} (width {})", g, c.GW[g]), gcol[g], steps, smooth(y), 2.0});
    }
    gs.x_marker = marker, gs.x_marker_label = mlabel;
    pg.chart(svg::line_chart(gs), gs.f.id, smooth_note);
  }

  // max/mean device load, mean over MoE layers, per policy
  svg::LineChart ld;
  ld.f = {"train-load", fmt::format("Max/mean FLOP-weighted device load over training (D = {}, mean over MoE layers)",
                                    tr.value("devices", 0)),
          "step", "max / mean load", 1100, 300, {}};
  int k = 0;
  for (const char* pol : {"contiguous", "pairing", "all_size"}) {
    std::vector<double> y(steps.size(), 0.0);
    bool any = false;
    for (auto& L : tr["layers"]) {
      const json& s = L["max_over_mean"].value(pol, json::array());
      for (size_t i = 0; i < steps.size(); i++) {
        const double v = i < s.size() ? num(s[i]) : NAN;
        y[i] += v / tr["layers"].size();
        any = any || std::isfinite(v);
      }
    }
    if (any) ld.series.push_back({pol, svg::palette(k), steps, smooth(y), 2.0});
    k++;
  }
  ld.y_from_zero = false;
  ld.x_marker = marker, ld.x_marker_label = mlabel;
  if (!ld.series.empty()) pg.chart(svg::line_chart(ld), ld.f.id, "A policy that refuses D has no line." + smooth_note);
}

void section_frequency(Page& pg, const Ctx& c) {
  const json& fb = c.a["frequency_buckets"];
  pg.h2("frequency", "4. Token frequency vs the size of the experts used (HMoE fig. 8)");
  pg.p("Token ids are bucketed by how often they occur in the whole data shard (log2 bins: bucket k holds tokens "
       "seen 2^k \u2264 c < 2^(k+1) times). Rare tokens are on the left. Per bucket: the mean width of the experts its "
       "tokens were routed to, gate-weighted (\u03a3 w\u00b7W_e / \u03a3 w over the bucket's assignments).");
  if (c.homogeneous)
    pg.p(fmt::format("All experts have width {}: the width charts are flat by construction; the activation-ratio "
                     "heatmap below still shows which experts specialise in rare or frequent tokens.",
                     c.W[0]),
         "note");
  const auto& buckets = fb["buckets"];
  const size_t B = buckets.size();
  std::vector<std::pair<double, std::string>> ticks;
  std::vector<double> xs;
  for (size_t i = 0; i < B; i++) {
    xs.push_back((double)i);
    ticks.push_back({(double)i, buckets[i]["label"].get<std::string>()});
  }
  auto by_layer = [&](const std::string& id, const std::string& title, const std::string& key, const std::string& ylab) {
    svg::LineChart lc;
    lc.f = {id, title, "occurrences of the token in the data shard (log2 bins)", ylab, 1100, 320, {}};
    int k = 0;
    for (auto& L : fb["layers"])
      lc.series.push_back({fmt::format("layer {}", L["layer"].get<int>()), svg::palette(k++), xs, nums(L[key]), 1.2, false, true});
    lc.series.push_back({"mean over layers", "#111111", xs, nums(fb["mean_over_layers"][key]), 3.0, false, true});
    lc.x_ticks = ticks;
    lc.y_from_zero = false;
    return lc;
  };
  {
    svg::LineChart lc = by_layer("freq-width", "Mean width of the experts used (gate-weighted), by token frequency",
                                 "mean_width_gate", "mean expert width");
    pg.chart(svg::line_chart(lc), lc.f.id);
  }
  {
    svg::LineChart lc = by_layer("freq-params", "Activated expert parameters per token, by token frequency",
                                 "activated_expert_params", "parameters / token (per layer)");
    pg.chart(svg::line_chart(lc), lc.f.id, "3\u00b7d\u00b7\u03a3 W_e over a token's experts; differs from the width "
                                           "chart when the number of experts per token varies (top-p).");
  }
  // bucket table
  std::vector<std::vector<std::string>> rows;
  const auto& mean = fb["mean_over_layers"];
  for (size_t i = 0; i < B; i++) {
    std::string ex;
    for (auto& e : buckets[i]["examples"]) {
      const std::string piece = e.value("piece", "");
      ex += (ex.empty() ? "" : "  ") + (piece.empty() ? fmt::format("#{}", e["id"].get<int>()) : piece);
    }
    rows.push_back({buckets[i]["label"].get<std::string>(), fmt_num(num(buckets[i]["distinct_tokens"])),
                    fmt_num(num(buckets[i]["analyzed_tokens"])), fmt::format("{:.1f}", num(mean["mean_width_gate"][i])),
                    fmt::format("{:.1f}", num(mean["mean_width_assign"][i])),
                    fmt::format("{:.2f}", num(mean["experts_per_token"][i])), ex});
  }
  pg.table({"occurrences in shard", "distinct tokens", "analyzed tokens", "mean width (gate)", "mean width (assign)",
            "experts / token", "most frequent tokens of the bucket"},
           rows);

  const json& last = fb["layers"].back();
  svg::Heatmap hm;
  hm.f = {"freq-expert-share", fmt::format("Layer {}: activation ratio of each expert, by token-frequency bucket", last["layer"].get<int>()),
          "expert (coloured strip: width)", "occurrences in shard", 1100, 150 + 30 * (int)B, {}};
  for (size_t i = 0; i < B; i++) {
    hm.row_labels.push_back(buckets[i]["label"].get<std::string>());
    for (double v : nums(last["expert_share"][i])) hm.values.push_back(v);
  }
  hm.col_labels = c.names;
  hm.col_colors = c.wcolor;
  hm.block = c.N;
  hm.scale_label = "ratio";
  hm.annotate = c.E <= 16;
  pg.chart(svg::heatmap(hm), hm.f.id, "Each row sums to 1: the share of the bucket's assignments that went to each expert.");

  // example tokens (fig. 8's table)
  const json& te = c.a["token_examples"];
  if (!te["tokens"].empty() && !c.homogeneous) {
    svg::Heatmap tx;
    tx.f = {"token-examples", fmt::format("Layer {}: activation ratio of example tokens (top: smallest, bottom: largest mean width)",
                                          te["layer"].get<int>()),
            "expert (coloured strip: width)", "", 1100, 150 + 24 * (int)te["tokens"].size(), {}};
    for (auto& t : te["tokens"]) {
      std::string piece = t.value("piece", "");
      if (piece.empty()) piece = fmt::format("#{}", t["id"].get<int>());
      tx.row_labels.push_back(fmt::format("{}  \u00b7 {:.0f}", piece, num(t["mean_width_gate"])));
      for (double v : nums(t["last_layer_expert_share"])) tx.values.push_back(v);
    }
    tx.col_labels = c.names;
    tx.col_colors = c.wcolor;
    tx.block = c.N;
    tx.scale_label = "ratio";
    tx.annotate = c.E <= 16;
    pg.chart(svg::heatmap(tx), tx.f.id,
             te.value("definition", "") + ". Row label: token \u00b7 its gate-weighted mean expert width over all MoE layers.");
  }
}

void section_wasserstein(Page& pg, const Ctx& c) {
  const json& w = c.a["wasserstein"];
  pg.h2("wasserstein", "5. Similarity of the experts' token distributions (HMoE fig. 7)");
  pg.p(w.value("definition", "") + ". Small = the two experts receive tokens of similar frequency.");
  if (w["same_width_pairs_mean"].is_number() && w["different_width_pairs_mean"].is_number())
    pg.p(fmt::format("Mean distance over expert pairs (mean over layers): same width {:.3f}, different width {:.3f}.",
                     num(w["same_width_pairs_mean"]), num(w["different_width_pairs_mean"])));
  auto hm = [&](const std::string& id, const std::string& title, const json& matrix) {
    svg::Heatmap h;
    // two side by side up to 24 experts, else one per row
    h.f = {id, title, "expert", "expert", c.E <= 24 ? 545 : 1100, c.E <= 24 ? 560 : 1100, {}};
    h.square = true;
    h.row_labels = h.col_labels = c.names;
    h.row_colors = h.col_colors = c.wcolor;
    for (auto& row : matrix)
      for (double v : nums(row)) h.values.push_back(v);
    h.block = c.N;
    h.scale_label = "W1 (log2 rank)";
    h.annotate = c.E <= 12;
    pg.chart(svg::heatmap(h), id);
  };
  const json& last = w["layers"].back();
  pg.open_grid();
  hm("wasserstein-last", fmt::format("Layer {} (last MoE layer)", last["layer"].get<int>()), last["matrix"]);
  hm("wasserstein-mean", "Mean over MoE layers", w["mean"]);
  pg.close_grid();

  // mean log2 rank of each expert's tokens (mean over layers): which experts take rarer tokens
  std::vector<double> mean(c.E, 0.0);
  const auto& per = w["expert_mean_log2_rank"];
  for (auto& L : per) {
    auto v = nums(L["mean_log2_rank"]);
    for (int e = 0; e < c.E; e++) mean[e] += v[e] / per.size();
  }
  svg::BarChart b;
  b.f = {"expert-token-rank", "Mean log2(1 + frequency rank) of each expert's tokens (mean over MoE layers)", "expert",
         "log2(1 + rank)", 1100, 280, svg::width_legend(c.W)};
  b.labels = c.names;
  b.values = mean;
  b.colors = c.wcolor;
  pg.chart(svg::bar_chart(b), b.f.id, "Higher = the expert receives rarer tokens.");
}

void section_placement(Page& pg, const Ctx& c) {
  const json& dl = c.a["device_load"];
  const int D = dl.value("devices", 0);
  pg.h2("placement", fmt::format("6. FLOP-weighted device load per placement (D = {})", D));
  pg.p("Load of a device = \u03a3 over its experts of n_e \u00b7 W_e (tokens \u00d7 width, proportional to FLOPs), "
       "summed over all MoE layers (every layer uses the same placement). Bars are relative to the mean device load; "
       "the dashed line is perfect balance.");
  svg::GroupedBarChart g;
  g.f = {"device-load", fmt::format("Device load / mean load, by placement policy (D = {})", D), "placement policy",
         "load / mean load", 1100, 320, {}};
  for (int r = 0; r < D; r++) {
    g.series.push_back(fmt::format("device {}", r));
    g.colors.push_back(svg::palette(r));
  }
  std::vector<std::vector<std::string>> rows;
  for (auto& p : dl["policies"]) {
    const std::string pol = p["policy"];
    if (p.value("ok", false)) {
      g.groups.push_back(fmt::format("{}: max/mean {:.3f}", pol, num(p["max_over_mean"])));
      g.values.push_back(nums(p["relative_load"]));
      g.group_notes.push_back("");
      std::string per;
      for (auto& v : p["per_layer_max_over_mean"]) per += (per.empty() ? "" : ", ") + fmt::format("{:.3f}", num(v));
      std::string sw, ts;
      for (auto& v : p["static_width"]) sw += (sw.empty() ? "" : ", ") + fmt_num(num(v));
      for (auto& v : p["device_token_share"]) ts += (ts.empty() ? "" : ", ") + pct(num(v));
      rows.push_back({pol, fmt::format("{:.3f}", num(p["max_over_mean"])), per, sw, ts});
    } else {
      g.groups.push_back(pol + ": refused");
      g.values.push_back(std::vector<double>(D, NAN));
      g.group_notes.push_back("refused: " + p.value("error", std::string("?")));
      rows.push_back({pol, "refused", p.value("error", std::string("?")), "", ""});
    }
  }
  g.ref_line = 1.0;
  g.ref_label = "mean";
  g.value_labels = D <= 8;
  pg.chart(svg::grouped_bar_chart(g), g.f.id);
  pg.table({"policy", "max/mean (all MoE layers)", "max/mean per layer", "static width per device", "token share per device"},
           rows);
}

void section_definitions(Page& pg, const Ctx& c) {
  pg.h2("definitions", "Definitions");
  const json& a = c.a;
  std::vector<std::vector<std::string>> rows = {
      {"activated parameters", "mean over the analyzed tokens; a SwiGLU expert of width W holds 3\u00b7d\u00b7W weights. "
                               "Routed experts: 3\u00b7d\u00b7\u03a3_e n_e W_e / T per layer. MoE layer: + shared expert "
                               "+ router weights. Whole model: every non-FFN weight (one embedding row) + all FFNs."},
      {"expert share", "n_e / \u03a3_e n_e per layer (assignments, so shares sum to 1 even when a token uses several experts)"},
      {"frequency buckets", a["frequency_buckets"].value("definition", "")},
      {"width weighting", a["frequency_buckets"].value("weighting", "")},
      {"Wasserstein distance", a["wasserstein"].value("definition", "")},
      {"device load", a["device_load"].value("scope", "") +
                          "; contiguous: experts [rE/D,(r+1)E/D); pairing: large with small (greedy on width); "
                          "all_size: every device holds the same multiset of widths (MoHGE)"},
      {"files", "analysis.json holds every number; one CSV per chart beside this report"}};
  pg.table({"quantity", "definition"}, rows);
}

const char* kCss = R"(
body { font-family: sans-serif; margin: 0 auto; max-width: 1140px; padding: 12px 18px 40px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 8px 0 10px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-top: 8px; border-top: 2px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p { font-size: 13px; line-height: 1.45; max-width: 1100px; }
p.note { color: #a04000; }
nav { font-size: 13px; margin: 8px 0 4px; }
nav a { color: #1f5fa8; text-decoration: none; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0 12px; background: #fff; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
table.meta th { width: 90px; }
figure { margin: 8px 0; }
figcaption { font-size: 12px; color: #555; margin-top: 2px; max-width: 1100px; }
svg.chart { border: 1px solid #ddd; background: #fff; display: block; }
.grid { display: flex; flex-wrap: wrap; gap: 6px 10px; }
.grid figure { margin: 4px 0; }
)";

}  // namespace

RenderedReport render_report_html(const json& a) {
  Ctx c{a, a["model"]["expert_widths"].get<std::vector<int>>(), {}, {}, false, {}, 0, 0, 0, {}};
  c.E = (int)c.W.size();
  c.wcolor = svg::width_colors(c.W);
  c.Ng = a["model"].value("num_expert_groups", 0);
  c.N = a["model"].value("experts_per_group", 0);
  if (a["model"].contains("group_widths")) c.GW = a["model"]["group_widths"].get<std::vector<int>>();
  for (int e = 0; e < c.E; e++) c.names.push_back(expert_name(e, c.N));
  c.homogeneous = std::all_of(c.W.begin(), c.W.end(), [&](int w) { return w == c.W[0]; });
  c.lcolor = c.wcolor;
  if (c.homogeneous)
    for (int e = 0; e < c.E; e++) c.lcolor[e] = svg::palette(e);

  Page pg;
  section_header(pg, c);
  section_activated(pg, c);
  section_shares(pg, c);
  section_training(pg, c);
  section_frequency(pg, c);
  section_wasserstein(pg, c);
  section_placement(pg, c);
  section_definitions(pg, c);

  RenderedReport r;
  r.html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
           escape("mohge routing analysis: " + a.value("checkpoint", std::string("?"))) + "</title>\n<style>" + kCss +
           "</style>\n</head>\n<body>\n" + pg.body + "</body>\n</html>\n";
  r.chart_ids = std::move(pg.ids);
  return r;
}

}  // namespace mohge
