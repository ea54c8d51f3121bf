#pragma once
// Corpus BLEU and chrF as sacreBLEU 2.x computes them with its defaults, so the numbers can be put
// beside published ones:
//   BLEU: the 13a tokenizer (mteval-v13a's punctuation rules), n-grams up to 4 clipped by the most
//         any reference holds, the closest reference length (ties: the shorter) for the brevity
//         penalty, "exp" smoothing for orders with no match, statistics summed over the corpus.
//   chrF: character n-grams up to 6 over code points with whitespace removed, β = 2, precision and
//         recall averaged over the orders both sides have (no ε smoothing), statistics summed over
//         the corpus; with several references each sentence takes the one that scores best.
// Inputs are UTF-8; invalid bytes count as single characters.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace retort::eval {

// mteval-v13a tokenization as sacreBLEU applies it (after un-escaping &quot; &amp; &lt; &gt;).
std::string tokenize_13a(std::string_view line);

struct BleuScore {
  double score = 0;  // 0..100
  std::array<int64_t, 4> matches{}, totals{};
  std::array<double, 4> precisions{};  // 0..100, after smoothing
  double brevity_penalty = 0;
  int64_t hypothesis_length = 0, reference_length = 0;
};

// references[r][i]: reference stream r's sentence for hypothesis i (every stream as long as the
// hypotheses). tokenize: false compares the lines as they are, split on whitespace ("none").
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references,
                      bool tokenize = true);

struct ChrfOptions {
  int char_order = 6;
  double beta = 2;
  bool eps_smoothing = false;    // sacreBLEU's sentence-level default and its pre-2.0 corpus scoring
  bool remove_whitespace = true;
};

// 0..100.
double corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references,
                   const ChrfOptions& options = {});

// "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)", as sacreBLEU prints it.
std::string describe(const BleuScore& bleu);

}  // namespace retort::eval
