#include "arch/quantity.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace tessera::arch {
namespace {

TEST(Quantity, DecimalPrefixesAreExactPowersOfTen) {
  EXPECT_EQ(parse_quantity("1.8TB/s", Dim::Bandwidth), 1.8e12);
  EXPECT_EQ(parse_quantity("64GB", Dim::Bytes), 64e9);
  EXPECT_EQ(parse_quantity("1.5GHz", Dim::Frequency), 1.5e9);
  EXPECT_EQ(parse_quantity("700W", Dim::Power), 700.0);
  EXPECT_EQ(parse_quantity("0.25pJ", Dim::Energy), 0.25e-12);
  EXPECT_EQ(parse_quantity("3ns", Dim::Time), 3e-9);
  EXPECT_EQ(parse_quantity("11.25MB", Dim::Bytes), 11250000.0);
}

TEST(Quantity, BinaryPrefixesArePowersOfTwo) {
  EXPECT_EQ(parse_quantity("500MiB", Dim::Bytes), 500.0 * 1024 * 1024);
  EXPECT_EQ(parse_quantity("1KiB", Dim::Bytes), 1024.0);
  EXPECT_EQ(parse_quantity("32GiB", Dim::Bytes), 32.0 * 1024 * 1024 * 1024);
  EXPECT_NE(parse_quantity("1GiB", Dim::Bytes), parse_quantity("1GB", Dim::Bytes));
}

TEST(Quantity, BitsPerSecondBecomeBytesPerSecond) {
  EXPECT_EQ(parse_quantity("112Gbps", Dim::Bandwidth), 14e9);
  EXPECT_EQ(parse_quantity("400Gbps", Dim::Bandwidth), 50e9);
  EXPECT_EQ(parse_quantity("3.5Gbps", Dim::BitRate), 3.5e9);
  EXPECT_EQ(parse_quantity("6.4GT/s", Dim::BitRate), 6.4e9);
}

TEST(Quantity, Money) {
  EXPECT_EQ(parse_quantity("$16988", Dim::Money), 16988.0);
  EXPECT_EQ(parse_quantity("$18.1M", Dim::Money), 18.1e6);
  EXPECT_EQ(parse_quantity("$4.76/h", Dim::MoneyPerHour), 4.76);
  EXPECT_DOUBLE_EQ(parse_quantity("$0.08/kWh", Dim::MoneyPerEnergy), 0.08 / 3.6e6);
  EXPECT_EQ(parse_quantity("$17/GB", Dim::MoneyPerByte), 17e-9);
}

TEST(Quantity, AreasAndDensities) {
  EXPECT_EQ(parse_quantity("820mm2", Dim::Area), 820.0);
  EXPECT_EQ(parse_quantity("8.2cm2", Dim::Area), 820.0);
  EXPECT_EQ(parse_quantity("0.2/cm2", Dim::PerArea), 0.2);
}

TEST(Quantity, SpacesAndExponents) {
  EXPECT_EQ(parse_quantity(" 1.5 GHz ", Dim::Frequency), 1.5e9);
  EXPECT_EQ(parse_quantity("1e3MB", Dim::Bytes), 1e9);
  EXPECT_EQ(parse_quantity("2.5e-1pJ", Dim::Energy), 0.25e-12);
}

TEST(Quantity, CountsMustBeWholeNumbersWithoutUnits) {
  EXPECT_EQ(parse_quantity("64", Dim::Count), 64.0);
  EXPECT_THROW(parse_quantity("64.5", Dim::Count), QuantityError);
  EXPECT_THROW(parse_quantity("64B", Dim::Count), QuantityError);
  EXPECT_EQ(parse_quantity("95%", Dim::Ratio), 0.95);
}

TEST(Quantity, MissingUnitIsAnErrorThatSaysSo) {
  try {
    parse_quantity("1800", Dim::Bandwidth);
    FAIL() << "accepted a bandwidth without a unit";
  } catch (const QuantityError& e) {
    EXPECT_NE(std::string(e.what()).find("missing unit"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1.8TB/s"), std::string::npos) << e.what();
  }
}

TEST(Quantity, WrongUnitIsAnErrorNamingIt) {
  try {
    parse_quantity("1.5GHz", Dim::Bytes);
    FAIL() << "accepted a frequency as a size";
  } catch (const QuantityError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown unit 'GHz'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_quantity("16988", Dim::Money), QuantityError);
  EXPECT_THROW(parse_quantity("abc", Dim::Time), QuantityError);
  EXPECT_THROW(parse_quantity("", Dim::Time), QuantityError);
  EXPECT_THROW(parse_quantity("1..5GHz", Dim::Frequency), QuantityError);
}

TEST(Quantity, FormatPicksTheShortestTextAndRoundTrips) {
  struct Case {
    const char* text;
    Dim dim;
    const char* canonical;
  };
  for (const Case& c : {Case{"1.8TB/s", Dim::Bandwidth, "1.8TB/s"},
                        Case{"14.4Tbps", Dim::Bandwidth, "1.8TB/s"},
                        Case{"500MiB", Dim::Bytes, "500MiB"},
                        Case{"524288000B", Dim::Bytes, "500MiB"},
                        Case{"64GB", Dim::Bytes, "64GB"},
                        Case{"1530MHz", Dim::Frequency, "1.53GHz"},
                        Case{"700W", Dim::Power, "700W"},
                        Case{"0.25pJ", Dim::Energy, "250fJ"},
                        Case{"14ns", Dim::Time, "14ns"},
                        Case{"$16988", Dim::Money, "$16988"},
                        Case{"820mm2", Dim::Area, "820mm2"}}) {
    const double v = parse_quantity(c.text, c.dim);
    EXPECT_EQ(format_quantity(v, c.dim), c.canonical) << c.text;
    EXPECT_DOUBLE_EQ(parse_quantity(format_quantity(v, c.dim), c.dim), v) << c.text;
  }
}

}  // namespace
}  // namespace tessera::arch
