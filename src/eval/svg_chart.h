// defines: mohge::svg — a small, dependency-free SVG chart kit for self-contained HTML reports:
//          escape, fmt_num, nice_ticks, viridis, palette, width_colors, and one function per chart
//          kind: bar_chart, grouped_bar_chart, line_chart, heatmap.
// Every chart is a standalone <svg class="chart" id="..."> string (inline styles only, generic
// sans-serif font, no scripts), with a title, labelled axes and, where given, a legend on the right.
// All text (titles, labels, legend entries, tooltips) is XML/HTML-escaped. Non-finite values are
// "missing": no bar / a gap in the line / a grey heatmap cell.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mohge::svg {

std::string escape(std::string_view s);  // & < > " ' → entities
// Compact number: 3 significant digits, k/M/G suffixes from 10^4 on (12.3k, 4.56M), "–" if not finite.
std::string fmt_num(double v);
// Shorter, for values printed inside heatmap cells: 2 significant digits, no leading zero (.12, 3.4, 56).
std::string fmt_short(double v);
// About n "nice" tick values (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi]; at least 2 values.
std::vector<double> nice_ticks(double lo, double hi, int n = 5);
std::string viridis(double t);  // t ∈ [0, 1] (clamped) → "#rrggbb"
std::string palette(int i);     // categorical colours (cycled)
// One colour per expert from its width: viridis over [min, max] width (one colour if all equal).
std::vector<std::string> width_colors(const std::vector<int>& widths);
// Legend entries (colour, "W = …") for the distinct widths, ascending.
std::vector<std::pair<std::string, std::string>> width_legend(const std::vector<int>& widths);

// What every chart has.
struct Frame {
  std::string id;     // svg id (unique in the page)
  std::string title;  // drawn at the top
  std::string x_label, y_label;
  int width = 640, height = 320;                             // whole svg, legend included
  std::vector<std::pair<std::string, std::string>> legend;  // (colour, label), drawn right of the plot
};

// One bar per label.
struct BarChart {
  Frame f;
  std::vector<std::string> labels;
  std::vector<double> values;
  std::vector<std::string> colors;     // per bar; empty → palette(0)
  std::vector<std::string> tooltips;   // per bar (optional); default "label: value"
  std::optional<double> ref_line;      // dashed horizontal line (e.g. the uniform share)
  std::string ref_label;
  bool value_labels = false;           // print each value above its bar
};
std::string bar_chart(const BarChart& c);

// Groups of bars side by side: values[g][s] for group g, series s.
struct GroupedBarChart {
  Frame f;
  std::vector<std::string> groups;
  std::vector<std::string> series;          // names (legend, unless f.legend is set)
  std::vector<std::vector<double>> values;  // [group][series]
  std::vector<std::string> colors;          // per series; empty → palette
  std::vector<std::string> group_notes;     // per group (optional), printed in the group's slot
                                            // (e.g. why a placement was refused)
  std::optional<double> ref_line;
  std::string ref_label;
  bool value_labels = false;
};
std::string grouped_bar_chart(const GroupedBarChart& c);

struct LineSeries {
  std::string name, color;  // name "" → not in the legend
  std::vector<double> x, y;
  double stroke = 1.6;
  bool dashed = false;
  bool markers = false;  // a dot on every point
};

struct LineChart {
  Frame f;
  std::vector<LineSeries> series;
  std::vector<std::pair<double, std::string>> x_ticks;  // custom (value, label); empty → numeric
  std::optional<double> x_marker;                       // dashed vertical line, e.g. the checkpoint step
  std::string x_marker_label;
  bool y_from_zero = true;                              // include 0 in the y range
  bool legend_from_series = true;                       // legend = named series (when f.legend empty)
};
std::string line_chart(const LineChart& c);

// rows × cols cells coloured by value (viridis from min to max of the finite values), with a colour
// bar. Labels are thinned automatically when cells are small; every cell has a tooltip. f.width and
// f.height are the most the chart may take; the svg shrinks to the cells it draws.
struct Heatmap {
  Frame f;
  std::vector<std::string> row_labels, col_labels;
  std::vector<double> values;                  // [rows·cols], row-major; NaN → grey "missing"
  std::vector<std::string> row_colors, col_colors;  // optional strip beside the labels (e.g. width)
  std::string scale_label;                     // colour bar caption
  int block = 0;                               // > 0: separator lines every `block` rows/cols
  std::optional<bool> annotate;                // print values in cells (default: when cells are big)
  std::optional<double> vmin, vmax;            // fixed colour range
  bool square = false;                         // square cells (distance matrices)
};
std::string heatmap(const Heatmap& c);

}  // namespace mohge::svg
