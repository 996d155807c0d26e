// Plain-text tables with aligned columns, for terminal output.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tessera::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back({std::move(row), false}); }
  // A row whose last cell runs on across the columns after it, neither measured nor padded (a
  // message among figures).
  void add_spanning(std::vector<std::string> row) { rows_.push_back({std::move(row), true}); }
  // Columns after the first are right-aligned when `numeric_columns` is set (figures).
  void print(std::ostream& out, bool numeric_columns = false) const;
  // Comma-separated values, quoting cells that need it.
  void print_csv(std::ostream& out) const;

 private:
  struct Row {
    std::vector<std::string> cells;
    bool spanning;
  };
  std::vector<std::string> header_;
  std::vector<Row> rows_;
};

}  // namespace tessera::cli
