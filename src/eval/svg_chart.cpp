// defines: the chart functions of svg_chart.h
#include "eval/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace mohge::svg {

namespace {

constexpr double kCharW = 6.2;  // approximate advance of an 11 px sans-serif character
constexpr const char* kAxis = "#444";
constexpr const char* kGrid = "#e3e3e3";
constexpr const char* kMissing = "#d0d0d0";

bool finite(double v) { return std::isfinite(v); }

double text_w(std::string_view s, double char_w = kCharW) { return (double)s.size() * char_w; }

std::string shorten(const std::string& s, size_t max_chars) {
  if (max_chars == std::string::npos || s.size() <= max_chars) return s;
  return s.substr(0, max_chars - 1) + "\u2026";
}

// Plot area of a frame: what is left after title, axes and legend.
struct Box {
  double x0, y0, w, h;  // plot area
  double legend_x;      // where the legend column starts
};

double legend_width(const Frame& f) {
  if (f.legend.empty()) return 0;
  double w = 0;
  for (auto& [c, l] : f.legend) w = std::max(w, text_w(shorten(l, 36), 5.8));
  return std::min(w, 220.0) + 30;
}

Box layout(const Frame& f, double bottom) {
  const double ml = f.y_label.empty() ? 52 : 66, mt = 36, mr = 14 + legend_width(f);
  Box b;
  b.x0 = ml;
  b.y0 = mt;
  b.w = std::max(40.0, f.width - ml - mr);
  b.h = std::max(40.0, f.height - mt - bottom);
  b.legend_x = b.x0 + b.w + 16;
  return b;
}

std::string open_svg(const Frame& f) {
  std::string s = fmt::format(
      "<svg class=\"chart\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n",
      escape(f.id), f.width, f.height, f.width, f.height, escape(f.title));
  s += fmt::format("<title>{}</title>\n", escape(f.title));
  s += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", f.width, f.height);
  s += fmt::format("<text x=\"{:.1f}\" y=\"20\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\" "
                   "fill=\"#222\">{}</text>\n",
                   f.width / 2.0, escape(f.title));
  return s;
}

std::string legend_svg(const Frame& f, const Box& b) {
  if (f.legend.empty()) return "";
  std::string s;
  // as many entries as fit vertically; the rest summarised
  const double line = 15;
  const size_t fit = (size_t)std::max(1.0, std::floor((b.h + 10) / line));
  size_t shown = f.legend.size() <= fit ? f.legend.size() : fit - 1;
  double y = b.y0 + 4;
  for (size_t i = 0; i < shown; i++, y += line) {
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"11\" height=\"11\" fill=\"{}\"/>", b.legend_x, y,
                     escape(f.legend[i].first));
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10.5\" fill=\"#222\">{}</text>\n", b.legend_x + 16,
                     y + 9.5, escape(shorten(f.legend[i].second, 36)));
  }
  if (shown < f.legend.size())
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10.5\" fill=\"#666\">… {} more</text>\n",
                     b.legend_x, y + 9.5, f.legend.size() - shown);
  return s;
}

struct Scale {
  double lo, hi, p0, p1;  // value range -> pixel range
  double operator()(double v) const { return hi == lo ? p0 : p0 + (v - lo) / (hi - lo) * (p1 - p0); }
};

// Y axis: grid lines, tick labels, axis label. Returns the value range the ticks cover.
std::string y_axis(const Frame& f, const Box& b, const std::vector<double>& ticks, const Scale& ys) {
  std::string s;
  for (double t : ticks) {
    const double y = ys(t);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"/>", b.x0, y,
                     b.x0 + b.w, y, kGrid);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" fill=\"{}\">{}</text>\n", b.x0 - 5, y + 3.5,
                     kAxis, escape(fmt_num(t)));
  }
  s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n", b.x0, b.y0,
                   b.x0, b.y0 + b.h, kAxis);
  if (!f.y_label.empty())
    s += fmt::format("<text transform=\"translate(14,{:.1f}) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\">{}</text>\n",
                     b.y0 + b.h / 2, escape(f.y_label));
  return s;
}

std::string x_label_svg(const Frame& f, const Box& b) {
  if (f.x_label.empty()) return "";
  return fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#222\">{}</text>\n",
                     b.x0 + b.w / 2, (double)f.height - 6, escape(f.x_label));
}

std::string baseline(const Box& b, double y) {
  return fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n", b.x0, y,
                     b.x0 + b.w, y, kAxis);
}

std::string ref_line_svg(const Box& b, const Scale& ys, std::optional<double> v, const std::string& label) {
  if (!v || !finite(*v) || *v < std::min(ys.lo, ys.hi) || *v > std::max(ys.lo, ys.hi)) return "";
  const double y = ys(*v);
  std::string s = fmt::format(
      "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#c0392b\" stroke-width=\"1.2\" "
      "stroke-dasharray=\"5,3\"/>",
      b.x0, y, b.x0 + b.w, y);
  if (!label.empty())
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"10\" fill=\"#c0392b\">{}</text>",
                     b.x0 + b.w - 2, y - 3, escape(label));
  return s + "\n";
}

// Value range of bars: always includes 0; nice ticks.
std::pair<std::vector<double>, Scale> bar_scale(const Box& b, double lo, double hi) {
  lo = std::min(0.0, lo), hi = std::max(0.0, hi);
  if (!(hi > lo)) hi = lo + 1;
  auto ticks = nice_ticks(lo, hi, std::max(3, (int)(b.h / 45)));
  return {ticks, Scale{ticks.front(), ticks.back(), b.y0 + b.h, b.y0}};
}

// Category labels under slots of width `slot`: horizontal when they fit, else rotated -40°, thinned
// so they never overlap. Returns the svg and (via `need`) the bottom margin the labels take.
struct CatLabels {
  bool rotate = false;
  int every = 1;
  size_t max_chars = 18;
};

CatLabels plan_labels(const std::vector<std::string>& labels, double slot) {
  CatLabels p;
  double full = 0;
  for (auto& l : labels) full = std::max(full, text_w(l, 5.8));
  if (full + 4 <= slot) {  // everything fits horizontally: no truncation
    p.max_chars = std::string::npos;
    return p;
  }
  double w = 0;
  for (auto& l : labels) w = std::max(w, text_w(shorten(l, p.max_chars), 5.8));
  if (w + 4 <= slot) return p;
  p.rotate = true;
  p.every = std::max(1, (int)std::ceil(13.0 / std::max(slot, 1e-9)));
  return p;
}

double labels_height(const std::vector<std::string>& labels, const CatLabels& p) {
  if (!p.rotate) return 18;
  double w = 0;
  for (auto& l : labels) w = std::max(w, text_w(shorten(l, p.max_chars), 5.8));
  return 12 + w * 0.65;
}

std::string cat_labels_svg(const std::vector<std::string>& labels, const CatLabels& p, double x0, double slot,
                           double y) {
  std::string s;
  for (size_t i = 0; i < labels.size(); i++) {
    if ((int)i % p.every) continue;
    const double x = x0 + (i + 0.5) * slot;
    const std::string t = escape(shorten(labels[i], p.max_chars));
    if (p.rotate)
      s += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-40)\" text-anchor=\"end\" font-size=\"10\" "
                       "fill=\"{}\">{}</text>",
                       x + 3, y + 8, kAxis, t);
    else
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{}\">{}</text>", x,
                       y + 12, kAxis, t);
  }
  return s + "\n";
}

double bottom_for(const Frame& f, double labels_h) { return labels_h + (f.x_label.empty() ? 8 : 24); }

std::string hex(int r, int g, int b) { return fmt::format("#{:02x}{:02x}{:02x}", r, g, b); }

}  // namespace

// ------------------------------------------------------------------------------------ helpers
std::string escape(std::string_view s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s) switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      case '\'': r += "&#39;"; break;
      default: r += c;
    }
  return r;
}

std::string fmt_num(double v) {
  if (!finite(v)) return "\u2013";
  const double a = std::fabs(v);
  auto sig3 = [](double x) {
    // 3 significant digits, trailing zeros dropped
    if (x == 0) return std::string("0");
    const int digits = std::max(0, 2 - (int)std::floor(std::log10(std::fabs(x))));
    std::string s = fmt::format("{:.{}f}", x, std::min(digits, 6));
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s;
  };
  if (a >= 1e9) return sig3(v / 1e9) + "G";
  if (a >= 1e6) return sig3(v / 1e6) + "M";
  if (a >= 1e4) return sig3(v / 1e3) + "k";
  if (a >= 1e-4 || a == 0) return sig3(v);
  return fmt::format("{:.2e}", v);
}

std::string fmt_short(double v) {
  if (!finite(v)) return "\u2013";
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e4) return fmt_num(v);
  if (a < 0.01) return v > 0 ? "<.01" : ">-.01";
  std::string s = fmt::format("{:.{}f}", v, std::max(0, 1 - (int)std::floor(std::log10(a))));
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s.rfind("0.", 0) == 0) s = s.substr(1);  // .12
  return s;
}

std::vector<double> nice_ticks(double lo, double hi, int n) {
  if (!finite(lo) || !finite(hi)) lo = 0, hi = 1;
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  n = std::max(2, n);
  const double raw = (hi - lo) / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag * 10;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  const double start = std::floor(lo / step + 1e-9) * step, end = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> t;
  for (int i = 0;; i++) {
    double v = start + i * step;
    if (std::fabs(v) < step * 1e-9) v = 0;
    t.push_back(v);
    if (v >= end - step * 1e-9 || i > 1000) break;
  }
  if (t.size() < 2) t.push_back(t.back() + step);
  return t;
}

std::string viridis(double t) {
  static const int stops[][3] = {{68, 1, 84},    {72, 40, 120},  {62, 74, 137}, {49, 104, 142}, {38, 130, 142},
                                 {31, 158, 137}, {53, 183, 121}, {110, 206, 88}, {181, 222, 43}, {253, 231, 37}};
  if (!finite(t)) return kMissing;
  t = std::clamp(t, 0.0, 1.0) * 9.0;
  const int i = std::min(8, (int)t);
  const double u = t - i;
  auto mix = [&](int k) { return (int)std::lround(stops[i][k] + (stops[i + 1][k] - stops[i][k]) * u); };
  return hex(mix(0), mix(1), mix(2));
}

std::string palette(int i) {
  static const char* c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                            "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return c[((i % 10) + 10) % 10];
}

std::vector<std::string> width_colors(const std::vector<int>& widths) {
  std::vector<std::string> out;
  if (widths.empty()) return out;
  const auto [mn, mx] = std::minmax_element(widths.begin(), widths.end());
  for (int w : widths) out.push_back(*mx == *mn ? viridis(0.35) : viridis(0.08 + 0.84 * (w - *mn) / double(*mx - *mn)));
  return out;
}

std::vector<std::pair<std::string, std::string>> width_legend(const std::vector<int>& widths) {
  std::vector<int> u = widths;
  std::sort(u.begin(), u.end());
  u.erase(std::unique(u.begin(), u.end()), u.end());
  const auto colors = width_colors(u);
  std::vector<std::pair<std::string, std::string>> l;
  for (size_t i = 0; i < u.size(); i++) l.push_back({colors[i], fmt::format("width {}", u[i])});
  return l;
}

// One bar from y0 to y1 (pixels) with a tooltip and, when `label` is not empty, the value above it.
static std::string bar_svg(double x, double w, double y0, double y1, const std::string& color,
                           const std::string& tip, const std::string& label, double font_size) {
  std::string s = fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{}</title></rect>",
                              x, std::min(y0, y1), w, std::fabs(y1 - y0), escape(color), escape(tip));
  if (!label.empty())
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"{}\" fill=\"#333\">{}</text>",
                     x + w / 2, std::min(y0, y1) - 3, font_size, escape(label));
  return s;
}

// ---------------------------------------------------------------------------------- bar chart
std::string bar_chart(const BarChart& c) {
  const size_t n = c.labels.size();
  Frame f = c.f;
  const double approx_slot = (f.width - 80 - legend_width(f)) / std::max<double>(1, n);
  const CatLabels lp = plan_labels(c.labels, approx_slot);
  const Box b = layout(f, bottom_for(f, labels_height(c.labels, lp)));
  double lo = 0, hi = 0;
  for (double v : c.values)
    if (finite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (c.ref_line && finite(*c.ref_line)) hi = std::max(hi, *c.ref_line);
  auto [ticks, ys] = bar_scale(b, lo, hi);
  std::string s = open_svg(f) + y_axis(f, b, ticks, ys);
  const double slot = b.w / std::max<double>(1, n), bw = std::max(1.0, slot * 0.78);
  for (size_t i = 0; i < n && i < c.values.size(); i++) {
    const double v = c.values[i];
    if (!finite(v)) continue;
    const double x = b.x0 + i * slot + (slot - bw) / 2, y0 = ys(0), y1 = ys(v);
    const std::string color = i < c.colors.size() ? c.colors[i] : palette(0);
    const std::string tip = i < c.tooltips.size() ? c.tooltips[i] : c.labels[i] + ": " + fmt_num(v);
    s += bar_svg(x, bw, y0, y1, color, tip, c.value_labels ? fmt_num(v) : "", 9.5);
    s += "\n";
  }
  s += baseline(b, ys(0));
  s += ref_line_svg(b, ys, c.ref_line, c.ref_label);
  s += cat_labels_svg(c.labels, lp, b.x0, slot, b.y0 + b.h);
  s += x_label_svg(f, b) + legend_svg(f, b) + "</svg>\n";
  return s;
}

// -------------------------------------------------------------------------- grouped bar chart
std::string grouped_bar_chart(const GroupedBarChart& c) {
  Frame f = c.f;
  const size_t G = c.groups.size(), S = c.series.size();
  if (f.legend.empty())
    for (size_t k = 0; k < S; k++) f.legend.push_back({k < c.colors.size() ? c.colors[k] : palette((int)k), c.series[k]});
  const double approx_slot = (f.width - 80 - legend_width(f)) / std::max<double>(1, G);
  const CatLabels lp = plan_labels(c.groups, approx_slot);
  const Box b = layout(f, bottom_for(f, labels_height(c.groups, lp)));
  double lo = 0, hi = 0;
  for (auto& row : c.values)
    for (double v : row)
      if (finite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (c.ref_line && finite(*c.ref_line)) hi = std::max(hi, *c.ref_line);
  auto [ticks, ys] = bar_scale(b, lo, hi);
  std::string s = open_svg(f) + y_axis(f, b, ticks, ys);
  const double slot = b.w / std::max<double>(1, G), inner = slot * 0.82, bw = inner / std::max<double>(1, S);
  for (size_t g = 0; g < G; g++) {
    const double gx = b.x0 + g * slot + (slot - inner) / 2;
    bool any = false;
    for (size_t k = 0; k < S && g < c.values.size() && k < c.values[g].size(); k++) {
      const double v = c.values[g][k];
      if (!finite(v)) continue;
      any = true;
      const double y0 = ys(0), y1 = ys(v), x = gx + k * bw;
      const std::string color = k < c.colors.size() ? c.colors[k] : palette((int)k);
      s += bar_svg(x + 0.5, std::max(0.5, bw - 1), y0, y1, color, c.groups[g] + ", " + c.series[k] + ": " + fmt_num(v),
                   c.value_labels && bw >= 16 ? fmt_num(v) : "", 9);
    }
    if (g < c.group_notes.size() && !c.group_notes[g].empty()) {
      // note in the slot: wrapped into lines of ~slot width
      const size_t per_line = std::max<size_t>(8, (size_t)(inner / 5.6));
      const std::string& note = c.group_notes[g];
      double y = any ? b.y0 + 12 : b.y0 + b.h * 0.35;
      std::string line;
      std::vector<std::string> lines;
      for (size_t p = 0; p < note.size();) {
        size_t q = note.find(' ', p);
        if (q == std::string::npos) q = note.size();
        std::string word = note.substr(p, q - p);
        if (!line.empty() && line.size() + 1 + word.size() > per_line) lines.push_back(line), line.clear();
        line += (line.empty() ? "" : " ") + word;
        p = q + 1;
      }
      if (!line.empty()) lines.push_back(line);
      if (lines.size() > 6) lines.resize(6), lines.back() += " …";
      for (auto& l : lines) {
        s += fmt::format("<text class=\"note\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\" "
                         "fill=\"#a04000\">{}</text>",
                         gx + inner / 2, y, escape(l));
        y += 12;
      }
      s += "\n";
    }
  }
  s += baseline(b, ys(0));
  s += ref_line_svg(b, ys, c.ref_line, c.ref_label);
  s += cat_labels_svg(c.groups, lp, b.x0, slot, b.y0 + b.h);
  s += x_label_svg(f, b) + legend_svg(f, b) + "</svg>\n";
  return s;
}

// --------------------------------------------------------------------------------- line chart
std::string line_chart(const LineChart& c) {
  Frame f = c.f;
  if (f.legend.empty() && c.legend_from_series)
    for (auto& sr : c.series)
      if (!sr.name.empty()) f.legend.push_back({sr.color, sr.name});
  const Box b = layout(f, bottom_for(f, 18));
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (auto& sr : c.series)
    for (size_t i = 0; i < sr.x.size() && i < sr.y.size(); i++)
      if (finite(sr.x[i]) && finite(sr.y[i])) {
        xlo = std::min(xlo, sr.x[i]), xhi = std::max(xhi, sr.x[i]);
        ylo = std::min(ylo, sr.y[i]), yhi = std::max(yhi, sr.y[i]);
      }
  if (!finite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  for (auto& [v, l] : c.x_ticks) xlo = std::min(xlo, v), xhi = std::max(xhi, v);
  if (c.x_marker && finite(*c.x_marker)) xlo = std::min(xlo, *c.x_marker), xhi = std::max(xhi, *c.x_marker);
  if (xhi == xlo) xlo -= 1, xhi += 1;
  if (c.y_from_zero) ylo = std::min(ylo, 0.0), yhi = std::max(yhi, 0.0);
  const auto yt = nice_ticks(ylo, yhi, std::max(3, (int)(b.h / 45)));
  const Scale ys{yt.front(), yt.back(), b.y0 + b.h, b.y0};
  // x: custom ticks span exactly [xlo, xhi]; numeric ticks get nice bounds
  std::vector<std::pair<double, std::string>> xt = c.x_ticks;
  Scale xs{xlo, xhi, b.x0, b.x0 + b.w};
  if (xt.empty()) {
    bool integer_x = true;  // e.g. steps: no 1.25 ticks
    for (auto& sr : c.series)
      for (double v : sr.x) integer_x = integer_x && (!finite(v) || v == std::floor(v));
    const auto t = nice_ticks(xlo, xhi, std::max(3, (int)(b.w / 90)));
    xs = Scale{t.front(), t.back(), b.x0, b.x0 + b.w};
    for (double v : t)
      if (!integer_x || v == std::floor(v)) xt.push_back({v, fmt_num(v)});
  } else {
    const double pad = (xhi - xlo) * 0.03;
    xs = Scale{xlo - pad, xhi + pad, b.x0, b.x0 + b.w};
  }
  std::string s = open_svg(f) + y_axis(f, b, yt, ys);
  // x ticks (thinned so labels do not collide)
  double maxw = 0;
  for (auto& [v, l] : xt) maxw = std::max(maxw, text_w(l, 5.8));
  const int every = std::max(1, (int)std::ceil((maxw + 8) * xt.size() / b.w));
  for (size_t i = 0; i < xt.size(); i++) {
    const double x = xs(xt[i].first);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"/>", x, b.y0 + b.h, x,
                     b.y0 + b.h + 4, kAxis);
    if ((int)i % every == 0)
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{}\">{}</text>", x,
                       b.y0 + b.h + 15, kAxis, escape(xt[i].second));
  }
  s += baseline(b, b.y0 + b.h) + "\n";
  if (c.x_marker && finite(*c.x_marker)) {
    const double x = xs(*c.x_marker);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#888\" stroke-dasharray=\"4,3\"/>",
                     x, b.y0, x, b.y0 + b.h);
    if (!c.x_marker_label.empty())
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\" font-size=\"10\" fill=\"#666\">{}</text>",
                       x + (x > b.x0 + b.w * 0.8 ? -3 : 3), b.y0 + 10, x > b.x0 + b.w * 0.8 ? "end" : "start",
                       escape(c.x_marker_label));
    s += "\n";
  }
  for (auto& sr : c.series) {
    std::string d;
    bool pen = false;
    for (size_t i = 0; i < sr.x.size() && i < sr.y.size(); i++) {
      if (!finite(sr.x[i]) || !finite(sr.y[i])) {
        pen = false;
        continue;
      }
      d += fmt::format("{}{:.1f},{:.1f} ", pen ? "L" : "M", xs(sr.x[i]), ys(sr.y[i]));
      pen = true;
    }
    if (!d.empty())
      s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{:.2f}\" stroke-linejoin=\"round\"{}>"
                       "<title>{}</title></path>\n",
                       d, escape(sr.color), sr.stroke, sr.dashed ? " stroke-dasharray=\"6,3\"" : "", escape(sr.name));
    if (sr.markers)
      for (size_t i = 0; i < sr.x.size() && i < sr.y.size(); i++)
        if (finite(sr.x[i]) && finite(sr.y[i]))
          s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.6\" fill=\"{}\"><title>{}</title></circle>",
                           xs(sr.x[i]), ys(sr.y[i]), escape(sr.color),
                           escape(sr.name + " (" + fmt_num(sr.x[i]) + "): " + fmt_num(sr.y[i])));
  }
  s += x_label_svg(f, b) + legend_svg(f, b) + "</svg>\n";
  return s;
}

// ------------------------------------------------------------------------------------ heatmap
std::string heatmap(const Heatmap& c) {
  Frame f = c.f;
  const size_t R = c.row_labels.size(), C = c.col_labels.size();
  double vmin = INFINITY, vmax = -INFINITY;
  for (size_t i = 0; i < R * C && i < c.values.size(); i++)
    if (finite(c.values[i])) vmin = std::min(vmin, c.values[i]), vmax = std::max(vmax, c.values[i]);
  if (c.vmin) vmin = *c.vmin;
  if (c.vmax) vmax = *c.vmax;
  if (!finite(vmin)) vmin = 0, vmax = 1;
  if (vmax <= vmin) vmax = vmin + (vmin == 0 ? 1 : std::fabs(vmin) * 0.01);

  // geometry: cells fill the space left of the colour bar (square when asked, else at most 90 × 40 px);
  // the svg then shrinks to what the cells use
  double rlw = 0, clw = 0;
  for (auto& l : c.row_labels) rlw = std::max(rlw, text_w(shorten(l, 22), 5.8));
  for (auto& l : c.col_labels) clw = std::max(clw, text_w(shorten(l, 22), 5.8));
  const double strip = c.row_colors.empty() && c.col_colors.empty() ? 0 : 7;
  const double left = 10 + (f.y_label.empty() ? 0 : 18) + rlw + 6 + strip, top = 36;
  const double bar_w = 96;  // colour bar + its tick labels
  const double avail_w = f.width - left - bar_w - 10;
  const double Cn = std::max<size_t>(1, C), Rn = std::max<size_t>(1, R);
  double cw = std::min(avail_w / Cn, c.square ? (f.height - top - 40) / Rn : 90.0);
  const bool rot = clw > cw;  // column labels rotated when wider than a cell
  const double bottom = (rot ? 10 + clw * 0.65 : 20) + strip + (f.x_label.empty() ? 6 : 22);
  double ch = std::min((f.height - top - bottom) / Rn, c.square ? cw : 40.0);
  if (c.square) cw = ch = std::min(cw, ch);
  cw = std::max(2.0, cw), ch = std::max(2.0, ch);
  const double gx = left, gy = top, gw = cw * C, gh = ch * R;
  const double bh = std::max(60.0, std::min(gh, 260.0));
  f.height = (int)std::ceil(gy + std::max(gh, bh + 20) + bottom);
  f.width = std::min(f.width, (int)std::ceil(gx + gw + bar_w + 10));
  const bool annotate = c.annotate.value_or(cw >= 34 && ch >= 15);

  std::string s = open_svg(f);
  if (!f.y_label.empty())
    s += fmt::format("<text transform=\"translate(14,{:.1f}) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\">{}</text>\n",
                     gy + gh / 2, escape(f.y_label));
  for (size_t r = 0; r < R; r++)
    for (size_t k = 0; k < C; k++) {
      const double v = r * C + k < c.values.size() ? c.values[r * C + k] : NAN;
      const double t = (v - vmin) / (vmax - vmin);
      const std::string color = finite(v) ? viridis(t) : kMissing;
      s += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"{}\"><title>{}</title></rect>",
                       gx + k * cw, gy + r * ch, cw + 0.05, ch + 0.05, color,
                       escape(c.row_labels[r] + " \u00d7 " + c.col_labels[k] + ": " + (finite(v) ? fmt_num(v) : "missing")));
      if (annotate && finite(v))
        s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"{:.1f}\" fill=\"{}\">{}</text>",
                         gx + (k + 0.5) * cw, gy + (r + 0.5) * ch + 3.5, std::min(10.0, std::min(cw / 3.4, ch * 0.7)),
                         t > 0.6 ? "#222" : "#fff", escape(fmt_short(v)));
    }
  s += "\n";
  if (c.block > 0) {
    for (size_t k = c.block; k < C; k += c.block)
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#fff\" stroke-width=\"1.5\"/>",
                       gx + k * cw, gy, gx + k * cw, gy + gh);
    for (size_t r = c.block; r < R; r += c.block)
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#fff\" stroke-width=\"1.5\"/>",
                       gx, gy + r * ch, gx + gw, gy + r * ch);
    s += "\n";
  }
  s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"{}\"/>\n", gx,
                   gy, gw, gh, kAxis);
  // colour strips
  for (size_t r = 0; r < R && r < c.row_colors.size(); r++)
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.2f}\" width=\"5\" height=\"{:.2f}\" fill=\"{}\"/>", gx - strip, gy + r * ch,
                     ch + 0.05, escape(c.row_colors[r]));
  for (size_t k = 0; k < C && k < c.col_colors.size(); k++)
    s += fmt::format("<rect x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"5\" fill=\"{}\"/>", gx + k * cw,
                     gy + gh + 2, cw + 0.05, escape(c.col_colors[k]));
  // labels, thinned to ≥ 11 px apart
  const int every = std::max(1, (int)std::ceil(11.0 / ch));
  for (size_t r = 0; r < R; r += every)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"10\" fill=\"{}\">{}</text>",
                     gx - strip - 4, gy + (r + 0.5) * ch + 3.5, kAxis, escape(shorten(c.row_labels[r], 22)));
  const int cevery = rot ? std::max(1, (int)std::ceil(11.0 / cw)) : std::max(1, (int)std::ceil((clw + 6) / cw));
  for (size_t k = 0; k < C; k += cevery) {
    const double x = gx + (k + 0.5) * cw, y = gy + gh + strip + 4;
    if (rot)
      s += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-40)\" text-anchor=\"end\" font-size=\"10\" "
                       "fill=\"{}\">{}</text>",
                       x + 3, y + 8, kAxis, escape(shorten(c.col_labels[k], 22)));
    else
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{}\">{}</text>", x,
                       y + 10, kAxis, escape(shorten(c.col_labels[k], 22)));
  }
  s += "\n";
  if (!f.x_label.empty())
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#222\">{}</text>\n", gx + gw / 2,
                     (double)f.height - 6, escape(f.x_label));
  // colour bar
  const double bx = gx + gw + 18;
  const std::string grad = f.id + "-grad";
  s += fmt::format("<defs><linearGradient id=\"{}\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">", escape(grad));
  for (int i = 0; i <= 10; i++) s += fmt::format("<stop offset=\"{:.1f}\" stop-color=\"{}\"/>", i / 10.0, viridis(i / 10.0));
  s += "</linearGradient></defs>\n";
  s += fmt::format("<rect class=\"colorbar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"{:.1f}\" fill=\"url(#{})\" "
                   "stroke=\"{}\"/>",
                   bx, gy, bh, escape(grad), kAxis);
  const auto ticks = nice_ticks(vmin, vmax, 4);
  for (double t : ticks) {
    if (t < vmin - 1e-12 * std::fabs(vmax) || t > vmax + 1e-12 * std::fabs(vmax)) continue;
    const double y = gy + bh - (t - vmin) / (vmax - vmin) * bh;
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"/>", bx + 12, y, bx + 16,
                     y, kAxis);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"{}\">{}</text>", bx + 18, y + 3.5, kAxis,
                     escape(fmt_num(t)));
  }
  if (!c.scale_label.empty())
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"#222\">{}</text>", bx - 4, gy + bh + 16,
                     escape(shorten(c.scale_label, 16)));
  s += "\n</svg>\n";
  return s;
}

}  // namespace mohge::svg
