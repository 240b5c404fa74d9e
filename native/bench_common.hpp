// Shared pieces of eva's Google Benchmark programs: a reporter that keeps each benchmark's median of
// one counter (so ratios against the baseline measured in the same run can be printed), and the
// `--json FILE` option taken out of the arguments before Google Benchmark parses the rest.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

namespace eva::bench {

class MedianReporter : public benchmark::ConsoleReporter {
public:
    explicit MedianReporter(std::string counter) : counter_(std::move(counter)) {}
    /// Benchmark name → median of the counter over repetitions (its only run without repetitions).
    std::map<std::string, double> value;
    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const auto& r : runs)
            if (r.run_type == Run::RT_Iteration || r.aggregate_name == "median")
                value[r.run_name.function_name] = r.counters.at(counter_).value;
    }

private:
    std::string counter_;
};

/// Removes `--json FILE` from argv (returning FILE, or "") and leaves the rest for benchmark::Initialize.
inline std::string take_json_option(int& argc, char** argv) {
    std::string path;
    int out = 0;
    for (int i = 0; i < argc; ++i) {
        if (std::string(argv[i]) == "--json" && i + 1 < argc) path = argv[++i];
        else argv[out++] = argv[i];
    }
    if (out < argc) argv[out] = nullptr;  // keep the argv[argc] == nullptr convention
    argc = out;
    return path;
}

}  // namespace eva::bench
