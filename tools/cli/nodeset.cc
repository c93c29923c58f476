#include "tools/cli/nodeset.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace spindle {
namespace {

constexpr size_t kMaxHosts = 1'000'000;

absl::Status bad(absl::string_view part, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("node set '", part, "': ", why));
}

bool all_digits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return isdigit(static_cast<unsigned char>(c)); });
}

// The names one bracket group stands for: "01-03,7" -> 01 02 03 7.
absl::StatusOr<std::vector<std::string>> expand_group(absl::string_view element, absl::string_view group) {
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(group, ',')) {
    absl::string_view range = item, step_text;
    if (size_t slash = item.find('/'); slash != absl::string_view::npos) {
      range = item.substr(0, slash);
      step_text = item.substr(slash + 1);
    }
    size_t dash = range.find('-');
    absl::string_view lo_text = range.substr(0, dash);
    absl::string_view hi_text = dash == absl::string_view::npos ? lo_text : range.substr(dash + 1);
    uint64_t lo, hi, step = 1;
    if (!all_digits(lo_text) || !all_digits(hi_text) || !absl::SimpleAtoi(lo_text, &lo) ||
        !absl::SimpleAtoi(hi_text, &hi) || (!step_text.empty() && (!absl::SimpleAtoi(step_text, &step) || step == 0))) {
      return bad(element, absl::StrCat("'[", group, "]' is not a list of numbers and ranges such as [1-4,7]"));
    }
    if (hi < lo) return bad(element, absl::StrCat("the range ", range, " runs backwards"));
    if ((hi - lo) / step >= kMaxHosts) return bad(element, "more than a million names");
    size_t width = lo_text.size() > 1 && lo_text[0] == '0' ? lo_text.size() : 0;
    for (uint64_t n = lo; n <= hi; n += step) {
      std::string digits = absl::StrCat(n);
      if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
      out.push_back(std::move(digits));
    }
  }
  return out;
}

absl::Status expand_element(absl::string_view element, std::vector<std::string>* out) {
  std::vector<std::string> names = {""};
  size_t i = 0;
  while (i < element.size()) {
    size_t open = element.find('[', i);
    absl::string_view text = element.substr(i, open == absl::string_view::npos ? absl::string_view::npos : open - i);
    if (text.find(']') != absl::string_view::npos) return bad(element, "a ']' without its '['");
    for (auto& n : names) n.append(text.data(), text.size());
    if (open == absl::string_view::npos) break;
    size_t close = element.find(']', open);
    if (close == absl::string_view::npos) return bad(element, "a '[' without its ']'");
    absl::StatusOr<std::vector<std::string>> group = expand_group(element, element.substr(open + 1, close - open - 1));
    if (!group.ok()) return group.status();
    if (names.size() * group->size() > kMaxHosts) return bad(element, "more than a million names");
    std::vector<std::string> product;
    product.reserve(names.size() * group->size());
    for (const auto& n : names) {
      for (const auto& g : *group) product.push_back(absl::StrCat(n, g));
    }
    names = std::move(product);
    i = close + 1;
  }
  out->insert(out->end(), names.begin(), names.end());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> expand_nodeset(absl::string_view text) {
  std::vector<std::string> all;
  size_t depth = 0, start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    char c = i < text.size() ? text[i] : ',';
    if (c == '[') ++depth;
    if (c == ']' && depth > 0) --depth;
    bool separator = depth == 0 && (c == ',' || isspace(static_cast<unsigned char>(c)));
    if (!separator) continue;
    if (i > start) {
      absl::Status s = expand_element(text.substr(start, i - start), &all);
      if (!s.ok()) return s;
      if (all.size() > kMaxHosts) return bad(text, "more than a million names");
    }
    start = i + 1;
  }
  if (depth != 0) return bad(text, "a '[' without its ']'");
  std::set<std::string> seen;
  std::vector<std::string> unique;
  for (auto& h : all) {
    if (seen.insert(h).second) unique.push_back(std::move(h));
  }
  return unique;
}

std::vector<std::string> exclude_hosts(const std::vector<std::string>& hosts, const std::vector<std::string>& excluded) {
  std::set<std::string> drop(excluded.begin(), excluded.end());
  std::vector<std::string> out;
  for (const auto& h : hosts) {
    if (drop.insert(h).second) out.push_back(h);
  }
  return out;
}

std::string fold_nodeset(const std::vector<std::string>& hosts) {
  // Names split around their last run of digits; padded numbers ("01")
  // fold only with numbers of the same width.
  struct Key {
    std::string prefix, suffix;
    size_t width;  // 0: unpadded
    bool operator<(const Key& o) const {
      return std::tie(prefix, suffix, width) < std::tie(o.prefix, o.suffix, o.width);
    }
  };
  std::map<Key, std::set<uint64_t>> groups;
  std::set<std::string> plain;
  std::map<std::pair<std::string, std::string>, std::set<size_t>> padded_widths;
  struct Split {
    std::string prefix, digits, suffix;
  };
  std::vector<Split> splits;
  for (const auto& h : std::set<std::string>(hosts.begin(), hosts.end())) {
    size_t end = h.find_last_of("0123456789");
    if (end == std::string::npos || end - (h.find_last_not_of("0123456789", end) + 1) + 1 > 18) {
      plain.insert(h);
      continue;
    }
    size_t begin = h.find_last_not_of("0123456789", end);
    begin = begin == std::string::npos ? 0 : begin + 1;
    Split s{h.substr(0, begin), h.substr(begin, end + 1 - begin), h.substr(end + 1)};
    if (s.digits.size() > 1 && s.digits[0] == '0') padded_widths[{s.prefix, s.suffix}].insert(s.digits.size());
    splits.push_back(std::move(s));
  }
  for (const auto& s : splits) {
    size_t width = 0;
    auto pw = padded_widths.find({s.prefix, s.suffix});
    if (pw != padded_widths.end() && pw->second.count(s.digits.size())) width = s.digits.size();
    uint64_t n = 0;
    absl::SimpleAtoi(s.digits, &n);
    groups[Key{s.prefix, s.suffix, width}].insert(n);
  }
  std::vector<std::string> parts(plain.begin(), plain.end());
  auto pad = [](uint64_t n, size_t width) {
    std::string d = absl::StrCat(n);
    if (d.size() < width) d.insert(0, width - d.size(), '0');
    return d;
  };
  for (const auto& [key, numbers] : groups) {
    if (numbers.size() == 1) {
      parts.push_back(absl::StrCat(key.prefix, pad(*numbers.begin(), key.width), key.suffix));
      continue;
    }
    std::vector<std::string> ranges;
    for (auto it = numbers.begin(); it != numbers.end();) {
      uint64_t lo = *it, hi = lo;
      while (++it != numbers.end() && *it == hi + 1) hi = *it;
      ranges.push_back(lo == hi ? pad(lo, key.width) : absl::StrCat(pad(lo, key.width), "-", pad(hi, key.width)));
    }
    parts.push_back(absl::StrCat(key.prefix, "[", absl::StrJoin(ranges, ","), "]", key.suffix));
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace spindle
