#include "tools/cli/table.hpp"

#include <algorithm>

namespace tessera::cli {

void Table::print(std::ostream& out, bool numeric_columns) const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row, bool spanning = false) {
    const size_t cells = row.size() - (spanning && !row.empty() ? 1 : 0);
    for (size_t i = 0; i < cells && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
  };
  measure(header_);
  for (const Row& r : rows_) measure(r.cells, r.spanning);
  auto line = [&](const std::vector<std::string>& row, bool spanning = false) {
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      if (i > 0) out << "  ";
      if (spanning && i + 1 == row.size()) {
        out << cell;
        break;
      }
      const std::string pad(width[i] - cell.size(), ' ');
      const bool right = numeric_columns && i > 0;
      out << (right ? pad + cell : (i + 1 < width.size() ? cell + pad : cell));
    }
    out << "\n";
  };
  line(header_);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  line(rule);
  for (const Row& r : rows_) line(r.cells, r.spanning);
}

void Table::print_csv(std::ostream& out) const {
  auto cell = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  auto line = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << cell(row[i]);
    out << "\n";
  };
  line(header_);
  for (const Row& r : rows_) line(r.cells);
}

}  // namespace tessera::cli
