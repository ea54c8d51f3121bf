#include "eval/text_metrics.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <unordered_map>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace retort::eval {

namespace {

// One code point from UTF-8 at s[i] (advancing i); a byte that starts no valid character stands
// for itself.
char32_t next_code_point(std::string_view s, size_t& i) {
  if (utf8::valid_char_length(s, i) == 0) return char32_t(uint8_t(s[i++]));
  return utf8::decode(s, i);
}

// Python's str.isspace(), what str.split() splits on: Unicode White_Space plus the four ASCII
// separators U+001C..U+001F.
bool is_unicode_space(char32_t c) { return utf8::is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

// str.split(): the words between runs of whitespace.
std::vector<std::string> split_words(std::string_view s) {
  std::vector<std::string> words;
  std::string word;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    const char32_t c = next_code_point(s, i);
    if (is_unicode_space(c)) {
      if (!word.empty()) words.push_back(std::move(word)), word.clear();
    } else {
      word.append(s.substr(start, i - start));
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// mteval-v13a's punctuation: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
bool is_13a_punctuation(char c) {
  const auto b = uint8_t(c);
  return (b >= 0x7B && b <= 0x7E) || (b >= 0x5B && b <= 0x60) || (b >= 0x20 && b <= 0x26) || (b >= 0x28 && b <= 0x2B) ||
         (b >= 0x3A && b <= 0x40) || b == '/';
}

using NgramCounts = std::unordered_map<std::string, int64_t>;

// Word n-grams of orders 1..4, keyed by the words joined with \x01 (never inside a word after splitting).
std::array<NgramCounts, 4> word_ngrams(const std::vector<std::string>& words) {
  std::array<NgramCounts, 4> counts;
  for (size_t n = 1; n <= 4; ++n)
    for (size_t i = 0; i + n <= words.size(); ++i) {
      std::string key = words[i];
      for (size_t k = 1; k < n; ++k) key += '\x01' + words[i + k];
      ++counts[n - 1][key];
    }
  return counts;
}

double bleu_log(double x) { return x == 0 ? -9999999999.0 : std::log(x); }

}  // namespace

std::string tokenize_13a(std::string_view input) {
  std::string line(input);
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // The four substitutions in order, each left to right over non-overlapping matches.
  std::string a;
  for (char c : line) is_13a_punctuation(c) ? (a += ' ', a += c, a += ' ') : a += c;
  std::string b;  // ([^0-9])([.,]) → "\1 \2 "
  for (size_t i = 0; i < a.size(); ++i) {
    if (!is_digit(a[i]) && i + 1 < a.size() && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i], b += ' ', b += a[i + 1], b += ' ', ++i;
    } else {
      b += a[i];
    }
  }
  std::string c;  // ([.,])([^0-9]) → " \1 \2"
  for (size_t i = 0; i < b.size(); ++i) {
    if ((b[i] == '.' || b[i] == ',') && i + 1 < b.size() && !is_digit(b[i + 1])) {
      c += ' ', c += b[i], c += ' ', c += b[i + 1], ++i;
    } else {
      c += b[i];
    }
  }
  std::string d;  // ([0-9])(-) → "\1 \2 "
  for (size_t i = 0; i < c.size(); ++i) {
    if (is_digit(c[i]) && i + 1 < c.size() && c[i + 1] == '-') {
      d += c[i], d += ' ', d += '-', d += ' ', ++i;
    } else {
      d += c[i];
    }
  }
  std::string out;
  for (const std::string& word : split_words(d)) out += (out.empty() ? "" : " ") + word;
  return out;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references,
                      bool tokenize) {
  require(!references.empty(), ErrorKind::InvalidInput, "BLEU needs at least one reference per hypothesis");
  for (const auto& stream : references) {
    require(stream.size() == hypotheses.size(), ErrorKind::InvalidInput,
            "BLEU: {} hypotheses but a reference file holds {} lines; give one reference line per hypothesis",
            hypotheses.size(), stream.size());
  }
  auto words_of = [&](const std::string& line) { return split_words(tokenize ? tokenize_13a(line) : line); };
  BleuScore bleu;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const auto hyp = words_of(hypotheses[i]);
    const auto hyp_len = int64_t(hyp.size());
    std::array<NgramCounts, 4> most;  // per n-gram, the most any reference holds
    int64_t closest = -1;
    for (const auto& stream : references) {
      const auto ref = words_of(stream[i]);
      const auto ref_len = int64_t(ref.size());
      const int64_t diff = std::llabs(hyp_len - ref_len), best = std::llabs(hyp_len - closest);
      if (closest < 0 || diff < best || (diff == best && ref_len < closest)) closest = ref_len;
      const auto counts = word_ngrams(ref);
      for (size_t n = 0; n < 4; ++n)
        for (const auto& [gram, count] : counts[n]) most[n][gram] = std::max(most[n][gram], count);
    }
    bleu.hypothesis_length += hyp_len;
    bleu.reference_length += closest;
    const auto counts = word_ngrams(hyp);
    for (size_t n = 0; n < 4; ++n) {
      bleu.totals[n] += std::max<int64_t>(0, hyp_len - int64_t(n));
      for (const auto& [gram, count] : counts[n]) {
        const auto it = most[n].find(gram);
        if (it != most[n].end()) bleu.matches[n] += std::min(count, it->second);
      }
    }
  }
  const double sys = double(bleu.hypothesis_length), ref = double(bleu.reference_length);
  bleu.brevity_penalty = sys < ref ? (sys > 0 ? std::exp(1 - ref / sys) : 0.0) : 1.0;
  if (bleu.matches[0] == 0) return bleu;
  double smooth = 1;
  for (size_t n = 0; n < 4; ++n) {
    if (bleu.totals[n] == 0) break;
    if (bleu.matches[n] == 0) {
      smooth *= 2;
      bleu.precisions[n] = 100.0 / (smooth * double(bleu.totals[n]));
    } else {
      bleu.precisions[n] = 100.0 * double(bleu.matches[n]) / double(bleu.totals[n]);
    }
  }
  double logs = 0;
  for (double p : bleu.precisions) logs += bleu_log(p);
  bleu.score = bleu.brevity_penalty * std::exp(logs / 4);
  return bleu;
}

namespace {

struct ChrfStats {
  std::vector<double> values;  // per order: hypothesis n-grams, reference n-grams, matches
};

std::u32string chrf_characters(std::string_view line, bool remove_whitespace) {
  std::u32string chars;
  for (size_t i = 0; i < line.size();) {
    const char32_t c = next_code_point(line, i);
    if (!(remove_whitespace && is_unicode_space(c))) chars.push_back(c);
  }
  return chars;
}

std::vector<std::map<std::u32string, int64_t>> char_ngrams(const std::u32string& chars, int order) {
  std::vector<std::map<std::u32string, int64_t>> counts(static_cast<size_t>(order));
  for (int n = 1; n <= order; ++n)
    for (size_t i = 0; i + size_t(n) <= chars.size(); ++i) ++counts[size_t(n - 1)][chars.substr(i, size_t(n))];
  return counts;
}

double chrf_score(const std::vector<double>& stats, const ChrfOptions& o) {
  constexpr double eps = 1e-16;
  const double factor = o.beta * o.beta;
  double score = 0, avg_precision = 0, avg_recall = 0;
  int effective = 0;
  for (int n = 0; n < o.char_order; ++n) {
    const double hyp = stats[size_t(3 * n)], ref = stats[size_t(3 * n + 1)], match = stats[size_t(3 * n + 2)];
    const double precision = hyp > 0 ? match / hyp : eps, recall = ref > 0 ? match / ref : eps;
    const double denominator = factor * precision + recall;
    score += denominator > 0 ? (1 + factor) * precision * recall / denominator : eps;
    if (hyp > 0 && ref > 0) avg_precision += precision, avg_recall += recall, ++effective;
  }
  if (o.eps_smoothing) return 100 * score / o.char_order;
  if (effective == 0) return 0;
  avg_precision /= effective, avg_recall /= effective;
  if (avg_precision + avg_recall == 0) return 0;
  return 100 * (1 + factor) * avg_precision * avg_recall / (factor * avg_precision + avg_recall);
}

}  // namespace

double corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references,
                   const ChrfOptions& options) {
  require(!references.empty(), ErrorKind::InvalidInput, "chrF needs at least one reference per hypothesis");
  for (const auto& stream : references) {
    require(stream.size() == hypotheses.size(), ErrorKind::InvalidInput,
            "chrF: {} hypotheses but a reference file holds {} lines", hypotheses.size(), stream.size());
  }
  std::vector<double> total(size_t(3 * options.char_order), 0.0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const auto hyp = char_ngrams(chrf_characters(hypotheses[i], options.remove_whitespace), options.char_order);
    std::vector<double> best;
    double best_score = -1;
    for (const auto& stream : references) {
      const auto ref = char_ngrams(chrf_characters(stream[i], options.remove_whitespace), options.char_order);
      std::vector<double> stats(total.size(), 0.0);
      for (size_t n = 0; n < size_t(options.char_order); ++n) {
        for (const auto& [gram, count] : hyp[n]) {
          stats[3 * n] += double(count);
          const auto it = ref[n].find(gram);
          if (it != ref[n].end()) stats[3 * n + 2] += double(std::min(count, it->second));
        }
        for (const auto& [gram, count] : ref[n]) stats[3 * n + 1] += double(count);
      }
      const double score = chrf_score(stats, options);
      if (score > best_score) best_score = score, best = std::move(stats);
    }
    for (size_t k = 0; k < total.size(); ++k) total[k] += best[k];
  }
  return chrf_score(total, options);
}

std::string describe(const BleuScore& b) {
  const double ratio = b.reference_length > 0 ? double(b.hypothesis_length) / double(b.reference_length) : 0.0;
  return fmt::format("BLEU = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
                     b.score, b.precisions[0], b.precisions[1], b.precisions[2], b.precisions[3], b.brevity_penalty,
                     ratio, b.hypothesis_length, b.reference_length);
}

}  // namespace retort::eval
