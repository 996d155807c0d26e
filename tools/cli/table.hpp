// Plain-text tables with aligned columns, for terminal output.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tessera::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns after the first are right-aligned when `numeric_columns` is set (figures).
  void print(std::ostream& out, bool numeric_columns = false) const;
  // Comma-separated values, quoting cells that need it.
  void print_csv(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace tessera::cli
