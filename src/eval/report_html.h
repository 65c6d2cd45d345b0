// defines: RenderedReport, render_report_html — analysis.json (eval/analyze.h) → one self-contained
// HTML page: inline CSS, inline SVG charts (eval/svg_chart.h), no scripts, no external resources.
// Sections: 1 activated parameters, 2 expert / group shares, 3 over training, 4 token frequency vs
// expert width (HMoE fig. 8), 5 Wasserstein heatmaps (HMoE fig. 7), 6 device load per placement,
// then the definitions. Each chart is an <svg class="chart" id="…">; chart_ids lists them in order.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mohge {

struct RenderedReport {
  std::string html;
  std::vector<std::string> chart_ids;
};

RenderedReport render_report_html(const nlohmann::json& analysis);

}  // namespace mohge
