// Corpus BLEU and chrF against sacreBLEU 2.x. The expected values are sacreBLEU's own test vectors
// (its repository's test/test_bleu.py and test/test_chrf.py, computed by sacreBLEU itself); the
// 13a tokenizations follow mteval-v13a's rules by hand. And `retort eval bleu` on files.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/text_metrics.h"
#include "test_support.h"

namespace retort::eval {
namespace {

const std::vector<std::string> kHypotheses{"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
const std::vector<std::vector<std::string>> kReferences{
    {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
    {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};

TEST(Bleu, TheTokenizerFollowsMteval13a) {
  EXPECT_EQ(tokenize_13a("The dog bit the man."), "The dog bit the man .");
  EXPECT_EQ(tokenize_13a("It wasn't (quite) 3.5, or 1,000-2,000 &quot;units&quot;!"),
            "It wasn't ( quite ) 3.5 , or 1,000 - 2,000 \" units \" !");
  EXPECT_EQ(tokenize_13a("  a\u00a0b\n\tc.d  "), "a b c . d");
  EXPECT_EQ(tokenize_13a("e-mail 9-5 x/y"), "e-mail 9 - 5 x / y");
}

TEST(Bleu, MatchesSacreBleusCorpusScores) {
  EXPECT_NEAR(corpus_bleu(kHypotheses, kReferences).score, 48.530827, 1e-6);
  EXPECT_NEAR(corpus_bleu(kHypotheses, kReferences, /*tokenize=*/false).score, 49.1919566, 1e-6);
  EXPECT_EQ(corpus_bleu({"", "", ""}, kReferences).score, 0.0) << "empty hypotheses are kept, and score 0";
  EXPECT_NEAR(corpus_bleu({"this is a test"}, {{"this is a test"}}).score, 100.0, 1e-9);
}

TEST(Bleu, CountsClippedNgramsAndLengths) {
  const BleuScore b = corpus_bleu({"am I am a character sequence"}, {{"I am a symbol string sequence a a"}});
  EXPECT_EQ(b.matches, (std::array<int64_t, 4>{4, 2, 1, 0}));
  EXPECT_EQ(b.totals, (std::array<int64_t, 4>{6, 5, 4, 3}));
  EXPECT_EQ(b.hypothesis_length, 6);
  EXPECT_EQ(b.reference_length, 8);
  EXPECT_NEAR(b.brevity_penalty, std::exp(1.0 - 8.0 / 6.0), 1e-12);
  // "exp" smoothing: the first order without matches counts as 1 / (2 · total).
  EXPECT_NEAR(b.precisions[3], 100.0 / (2 * 3), 1e-12);
  EXPECT_NE(describe(b).find("BLEU = "), std::string::npos);
}

TEST(Chrf, MatchesSacreBleusTestVectors) {
  ChrfOptions beta3;
  beta3.beta = 3;
  ChrfOptions smoothed = beta3;
  smoothed.eps_smoothing = true;
  const std::vector<std::tuple<std::string, std::string, double>> smoothed_cases{
      {"abcdefg", "hijklmnop", 0.0}, {"a", "b", 0.0}, {"", "b", 0.0}, {"aa", "ab", 8.3333}, {"a", "a", 16.6667},
      {"a b c", "a b c", 50.0}, {"a b c", "abc", 50.0},
      {" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .",
       "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .",
       63.361730},
      {" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. ",
       "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.", 64.1302698},
      {"Niemand hat die Absicht, eine Mauer zu errichten", "Niemand hat die Absicht, eine Mauer zu errichten", 100.0}};
  for (const auto& [hyp, ref, want] : smoothed_cases)
    EXPECT_NEAR(corpus_chrf({hyp}, {{ref}}, smoothed), want, 1e-4) << hyp;
  EXPECT_NEAR(corpus_chrf({"a", "b"}, {{"a", "c"}}, smoothed), 8.3333, 1e-4);
  for (const auto& [hyp, ref, want] : std::vector<std::tuple<std::string, std::string, double>>{
           {"a", "a", 100.0}, {"", "reference", 0.0}, {"a b c", "abc", 100.0}, {"aa", "ab", 25.0}})
    EXPECT_NEAR(corpus_chrf({hyp}, {{ref}}, beta3), want, 1e-4) << hyp;
  EXPECT_NEAR(corpus_chrf({"a", "b"}, {{"a", "c"}}, beta3), 50.0, 1e-4);
  ChrfOptions keep = beta3;
  keep.remove_whitespace = false;
  EXPECT_NEAR(corpus_chrf({"Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."},
                          {{"Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."}}, keep),
              67.3481606, 1e-4);
  // Sentence level with sacreBLEU 2's β = 2 and ε smoothing.
  ChrfOptions sentence;
  sentence.eps_smoothing = true;
  EXPECT_NEAR(corpus_chrf({"Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře."},
                          {{"Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře."}},
                          sentence),
              39.14078509, 1e-4);
  EXPECT_NEAR(corpus_chrf({"Lapali po dechu, jejich životy skončily dřív, než skutečně začaly."},
                          {{"Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli."}},
                          sentence),
              57.15704367, 1e-4);
}

TEST(EvalBleuCli, ScoresFilesAndRefusesMismatchedOnes) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("retort-bleu-{}", getpid());
  fs::create_directories(dir);
  auto write = [&](const char* name, const std::vector<std::string>& lines) {
    std::ofstream out(dir / name);
    for (const auto& line : lines) out << line << "\n";
    return (dir / name).string();
  };
  const std::string hyp = write("hyp.txt", kHypotheses), ref1 = write("ref1.txt", kReferences[0]),
                    ref2 = write("ref2.txt", kReferences[1]), short_ref = write("short.txt", {"one line"});
  const auto ok = test::run_command(test::retort_binary() + " eval bleu --hyp " + hyp + " --ref " + ref1 + " --ref " +
                                    ref2 + " 2>&1");
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("BLEU = 48.53 "), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("chrF2 = "), std::string::npos) << ok.output;
  const auto bad = test::run_command(test::retort_binary() + " eval bleu --hyp " + hyp + " --ref " + short_ref + " 2>&1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("3 hypotheses but a reference file holds 1 lines"), std::string::npos) << bad.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace retort::eval
