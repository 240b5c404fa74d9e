// The model from the command line:
//   eva init      a freshly initialized model → safetensors
//   eva forward   logits of every position (and, with targets, the loss and every gradient)
//   eva train     train on text (default: the mini model on Debian's fortunes), with checkpoints
//   eva generate  sample text from a checkpoint with the absorbed (or naive) MLA cache
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

#include "cli.hpp"
#include "eva/checked.hpp"
#include "eva/checkpoint.hpp"
#include "eva/error.hpp"
#include "eva/hf_checkpoint.hpp"
#include "eva/io.hpp"
#include "eva/npy.hpp"
#include "eva/safetensors.hpp"
#include "eva/threads.hpp"
#include "eva/dist.hpp"
#include "eva/expert_parallel.hpp"
#include "eva/trainer.hpp"

namespace eva::cli {
namespace {

Balance balance_option(const std::string& s) { return parse_balance(s); }

// ------------------------------------------------------------------------------------------ init
struct InitOptions {
    std::string config = "mini", out, balance = "aux-free";
    std::uint64_t seed = 1;
    double std = 0.006;
};

void run_init(const InitOptions& o) {
    require_writable(o.out, "--out");
    const ModelArgs args = preset_or_file(o.config);
    Rng rng(o.seed);
    Model<float> m = model_init<float>(args, moe_config(args, balance_option(o.balance)), rng, o.std);
    save_model(m, o.out);
    std::printf("wrote %s: %llu parameters (%llu activated per token)\n", o.out.c_str(),
                (unsigned long long)parameter_count(args), (unsigned long long)parameter_count(args, true));
}

// --------------------------------------------------------------------------------------- forward
struct ForwardOptions {
    std::string weights, tokens, targets, out, grads_out, attn = "absorb";
    bool json = false;
};

void run_forward(const ForwardOptions& o) {
    // Every argument is checked before any output is written: a bad --targets must not leave a
    // replaced logits file behind.
    if (!o.out.empty()) require_writable(o.out, "--out");
    if (!o.grads_out.empty()) require_writable(o.grads_out, "--grads-out");
    Model<float> m = load_checkpoint(o.weights);  // an eva file or a Hugging Face folder
    const auto tokens = parse_token_ids(o.tokens, m.args.vocab_size, "--tokens");
    if (tokens.size() > std::size_t(m.args.max_seq_len))
        throw ConfigError("--tokens: " + std::to_string(tokens.size()) + " tokens exceed max_seq_len " +
                          std::to_string(m.args.max_seq_len));
    std::vector<Token> targets;
    if (!o.targets.empty()) {
        targets = parse_token_ids(o.targets, m.args.vocab_size, "--targets");
        if (targets.size() != tokens.size()) throw ConfigError("--targets must have as many tokens as --tokens");
    }
    const std::size_t T = tokens.size(), V = std::size_t(m.args.vocab_size);
    require_memory(checked_mul(checked_mul(T, V, "tokens × vocab_size"), sizeof(float), "the logits"), "the logits");
    // Logits of every position, computed the way generation does: one token at a time through the cache.
    Generator<float> gen(m, o.attn == "naive" ? AttentionCache::naive : AttentionCache::absorbed, T);
    Matrix<float> logits = Matrix<float>::from_shape({T, V});
    for (std::size_t t = 0; t < T; ++t) {
        const auto row = gen.feed({tokens[t]});
        std::copy(row.begin(), row.end(), logits.data() + t * V);
    }
    nlohmann::json j = {{"tokens", T}, {"vocab", V}, {"attn", o.attn}};
    if (!o.targets.empty()) {
        ModelWeights<float> g = model_zeros(m);
        const Loss loss = model_loss_and_grad(m, tokens, targets, 1, T, g);
        j["loss"] = loss.cross_entropy;
        j["balance_loss"] = loss.balance;
        if (!o.grads_out.empty()) {
            SafetensorsWriter w;
            for (const auto& t : named_tensors(g))
                if (t.trainable) w.add(t.name, t.shape, t.data);
            w.write(o.grads_out);
            j["grads"] = o.grads_out;
        }
    }
    if (!o.out.empty()) {
        write_npy(o.out, {T, V}, logits.data());
        j["logits"] = o.out;
    }
    if (o.json) return print_json(j);
    std::cout << "forward: " << T << " tokens through " << m.args.n_layers << " layers (" << o.attn << " cache)";
    if (j.contains("logits")) std::cout << "; logits [" << T << ", " << V << "] → " << o.out;
    std::cout << '\n';
    if (j.contains("loss"))
        std::printf("loss: %.6f nats/token (balance loss %.3g)%s\n", j["loss"].get<double>(), j["balance_loss"].get<double>(),
                    o.grads_out.empty() ? "" : ("; gradients → " + o.grads_out).c_str());
}

// ----------------------------------------------------------------------------------------- train
struct TrainOptions {
    std::string config = "mini", data = kDefaultCorpus, out, resume, balance = "aux-free", precision = "fp32";
    TrainConfig t;
    int eval_every = 100, sample_every = 0, sample_tokens = 200, threads = 0, save_every = 0, stop_after = 0, mtp = -1;
    int ep = 1, ranks_per_node = 1;  // expert parallelism (not saved: the checkpoint does not depend on it)
    bool json = false;
    double gamma = 0.001, alpha = 1e-4;
    std::set<std::string> given;  // the options the user gave explicitly (filled by the callback)
};

// Validation figures into a JSON line: val_loss, and with MTP modules each module's loss and accuracy
// (module 1's accuracy: how often its argmax is the token after next).
void add_evaluation(nlohmann::json& j, const Trainer::Evaluation& e) {
    j["val_loss"] = e.loss;
    if (e.mtp_loss.empty()) return;
    j["val_mtp_loss"] = e.mtp_loss;
    j["val_mtp_accuracy"] = e.mtp_accuracy;
}

std::string mtp_summary(const nlohmann::json& j) {
    if (!j.contains("val_mtp_loss")) return "";
    char buf[96];
    std::snprintf(buf, sizeof buf, "  MTP-1 val loss %.4f, next-next-byte accuracy %.1f%%", j["val_mtp_loss"][0].get<double>(),
                  100 * j["val_mtp_accuracy"][0].get<double>());
    return buf;
}

// On --resume the run continues as it was started: an option given again must agree with the
// checkpoint, else the error names both values (only --steps may change: a new total).
void require_same(const TrainOptions& o, const char* option, const std::string& given, const std::string& saved) {
    if (o.given.count(option) && given != saved)
        throw ConfigError(std::string(option) + " " + given + " contradicts the checkpoint " + o.resume + " (" + saved +
                          "); leave it out to continue the run as it was started");
}

std::string num(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
}

void run_train(TrainOptions o) {
    // Under mpirun, join the run first: an error from here on names its rank and ends every rank.
    Comm& comm = world();
    // Everything that can be checked before the work starts is: outputs first, so that a bad --out is
    // not discovered after an hour of training.
    if (!o.out.empty()) {
        require_writable(o.out, "--out");
        require_writable(Trainer::optimizer_path(o.out), "--out (optimizer state)");
    }
    if ((o.save_every > 0 || o.stop_after > 0) && o.out.empty())
        throw ConfigError(std::string(o.save_every > 0 ? "--save-every" : "--stop-after") + " needs --out");
    set_num_threads(o.threads);  // the losses do not depend on it (eva/threads.hpp)
    o.t.precision = parse_linear_precision(o.precision, "--precision");
    // The virtual nodes of node-limited routing: under --ep, groups of --ranks-per-node ranks; a single
    // process emulates a layout with --nodes.
    if (o.given.count("--ranks-per-node")) {
        if (o.ranks_per_node < 1 || o.ep % o.ranks_per_node != 0)
            throw ConfigError("--ranks-per-node " + std::to_string(o.ranks_per_node) + " must divide --ep " + std::to_string(o.ep));
        if (o.given.count("--nodes") && o.t.nodes != o.ep / o.ranks_per_node)
            throw ConfigError("--nodes " + std::to_string(o.t.nodes) + " contradicts --ep " + std::to_string(o.ep) +
                              " / --ranks-per-node " + std::to_string(o.ranks_per_node));
        o.t.nodes = o.ep / o.ranks_per_node;
        o.given.insert("--nodes");
    }
    const Corpus corpus = load_corpus(o.data);
    nlohmann::json meta;
    Model<float> m = o.resume.empty()
                         ? [&] {
                               ModelArgs args = preset_or_file(o.config);
                               if (o.mtp >= 0) args.n_mtp_layers = o.mtp;
                               args.validate();
                               return fresh_model(args, o.t.seed, balance_option(o.balance), o.gamma, o.alpha);
                           }()
                         : load_model(SafetensorsFile::read(o.resume), &meta);
    TrainingState st;
    if (!o.resume.empty()) {
        if (!meta.contains("training")) throw FileError(o.resume + ": not a training checkpoint (no training state)");
        st = TrainingState::from_json(meta["training"], m.args);
        const TrainConfig& c = st.config;
        if (o.given.count("--config") && to_json(preset_or_file(o.config)) != to_json(m.args))
            throw ConfigError("--config " + o.config + " contradicts the checkpoint " + o.resume +
                              " (a model of another configuration); leave it out to continue the run");
        require_same(o, "--batch", std::to_string(o.t.batch), std::to_string(c.batch));
        require_same(o, "--seq-len", std::to_string(o.t.seq_len), std::to_string(c.seq_len));
        require_same(o, "--lr", num(o.t.schedule.lr), num(c.schedule.lr));
        require_same(o, "--warmup", std::to_string(o.t.schedule.warmup_steps), std::to_string(c.schedule.warmup_steps));
        require_same(o, "--seed", std::to_string(o.t.seed), std::to_string(c.seed));
        require_same(o, "--precision", to_string(o.t.precision), to_string(c.precision));
        require_same(o, "--balance", o.balance, to_string(m.moe.balance));
        require_same(o, "--gamma", num(o.gamma), num(m.moe.gamma));
        require_same(o, "--alpha", num(o.alpha), num(m.moe.alpha));
        require_same(o, "--mtp", std::to_string(o.mtp), std::to_string(m.args.n_mtp_layers));
        require_same(o, "--mtp-lambda", num(o.t.mtp_lambda), num(c.mtp_lambda));
        require_same(o, "--shards", std::to_string(o.t.shards), std::to_string(c.shards));
        require_same(o, "--nodes", std::to_string(o.t.nodes), std::to_string(c.nodes));
        require_same(o, "--max-nodes", std::to_string(o.t.max_nodes), std::to_string(c.max_nodes));
        // The stored total is the target; --steps, when given, is a new total (the schedule follows it).
        // --eval-batches only changes what is measured, never the training, so it may differ too.
        const int steps = o.given.count("--steps") ? o.t.steps : c.steps;
        const int eval_batches = o.given.count("--eval-batches") ? o.t.eval_batches : c.eval_batches;
        if (steps <= st.step)
            throw ConfigError("--steps " + std::to_string(steps) + ": the checkpoint " + o.resume + " has done " +
                              std::to_string(st.step) + " steps already; give a larger total");
        o.t = c;
        o.t.steps = steps;
        o.t.eval_batches = eval_batches;
        o.t.schedule.total_steps = steps;
    }
    // Under mpirun every rank runs this function and takes part in the collective calls (step, traffic,
    // evaluation, samples and saves: under --ep a rank holds only its experts); rank 0 alone prints, and
    // Trainer::save writes on rank 0 only.
    Trainer tr(m, corpus, o.t, &comm, o.ep);
    if (!o.resume.empty()) tr.resume(o.resume, st);
    const bool lead = comm.rank() == 0;
    const int stop_at = o.stop_after > 0 ? std::min(o.t.steps, tr.steps_done() + o.stop_after) : o.t.steps;
    if (comm.size() > 1) {
        // Evaluations, samples and saves are collective: every rank must reach them at the same steps.
        const std::string loop = std::to_string(o.eval_every) + " " + std::to_string(o.sample_every) + " " +
                                 std::to_string(o.save_every) + " " + std::to_string(stop_at) + " " +
                                 std::to_string(o.sample_tokens) + (o.out.empty() ? "" : " out") + (o.json ? " json" : "");
        const auto all = allgather(comm, std::vector<std::uint64_t>{std::hash<std::string>{}(loop)});
        for (std::size_t r = 1; r < all.size(); ++r)
            if (all[r] != all[0])
                throw ConfigError("ranks 0 and " + std::to_string(r) +
                                  " were given different --eval-every, --sample-every, --save-every, --stop-after, "
                                  "--steps, --sample-tokens, --out or --json (every rank needs the same arguments)");
    }
    const bool tty = isatty(STDOUT_FILENO) && !o.json && lead;
    if (comm.size() > 1 && lead && !o.json)
        std::printf("data parallel over %d ranks: %d gradient shards of %d sequences, %d per rank\n", comm.size(),
                    tr.config().shards, o.t.batch / tr.config().shards, tr.config().shards / comm.size());
    const ExpertLayout& layout = tr.expert_layout();
    if (layout.ep > 1 && lead && !o.json)
        std::printf("expert parallel%s: groups of %d ranks, %zu routed experts per rank, nodes of %d ranks; %s\n",
                    comm.size() == 1 ? " (emulated: one process computes the traffic of the ranks)" : "", o.ep,
                    layout.per_rank(), layout.ranks_per_node,
                    tr.config().max_nodes ? ("each token's experts on at most " + std::to_string(tr.config().max_nodes) + " of " +
                                             std::to_string(tr.config().nodes) + " nodes").c_str()
                                          : "routing not node-limited");
    if (comm.size() > 1 && lead && !o.json) {  // what expert parallelism divides (each rank holds as much)
        const Trainer::StateBytes b = tr.state_bytes();
        std::printf("training state on each rank: weights %s, gradient buffers %s, AdamW moments %s\n",
                    format_bytes_binary(double(b.weights)).c_str(), format_bytes_binary(double(b.gradients)).c_str(),
                    format_bytes_binary(double(b.moments)).c_str());
    }
    if (layout.ep == 1 && tr.config().max_nodes && lead && !o.json)
        std::printf("node-limited routing: the experts in %d nodes, each token's on at most %d\n", tr.config().nodes,
                    tr.config().max_nodes);
    // Traffic of the whole run per rank, for the summary (each step's is in the JSON lines).
    std::vector<ExpertTraffic> run_experts;
    std::vector<Traffic> run_allreduce;
    std::uint64_t run_tokens = 0;
    if (!o.json && lead)
        std::printf("training %s (%llu parameters, %llu activated, %s Linear layers) on %s: %zu train / %zu validation "
                    "bytes, %d steps of %d×%d tokens\n",
                    o.resume.empty() ? o.config.c_str() : o.resume.c_str(), (unsigned long long)parameter_count(m.args),
                    (unsigned long long)parameter_count(m.args, true), to_string(o.t.precision).c_str(), corpus.source.c_str(),
                    corpus.train.size(), corpus.validation.size(), o.t.steps, o.t.batch, o.t.seq_len);
    const double tokens_per_step = double(o.t.batch) * o.t.seq_len;
    double elapsed = 0;
    std::optional<Trainer::Evaluation> evaluated;  // the latest step's evaluation, if it had one
    while (tr.steps_done() < stop_at) {
        const StepStats s = tr.step();
        elapsed += s.seconds;
        // Collective (every rank's figures go to rank 0), so every rank calls it.
        const auto [experts, allreduce] = tr.take_traffic();
        nlohmann::json traffic_line;
        if (!experts.empty()) {
            const std::uint64_t rank_tokens = std::uint64_t(o.t.batch) * std::uint64_t(o.t.seq_len) / experts.size();
            traffic_line = traffic_json(layout, experts, allreduce, m.moe.dim, rank_tokens);
            run_tokens += rank_tokens;
            run_experts.resize(experts.size());
            run_allreduce.resize(experts.size());
            for (std::size_t r = 0; r < experts.size(); ++r) {
                run_experts[r] += experts[r];
                run_allreduce[r].sent += allreduce[r].sent;
                run_allreduce[r].received += allreduce[r].received;
            }
        }
        const bool eval = s.step % o.eval_every == 0 || s.step == o.t.steps;
        nlohmann::json line = {{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
                               {"tokens_per_s", tokens_per_step / s.seconds}, {"max_vio", s.max_vio},
                               {"balance_loss", s.balance_loss}};
        evaluated.reset();
        if (eval) add_evaluation(line, evaluated.emplace(tr.evaluation()));  // collective
        std::string sample;
        if (o.sample_every > 0 && s.step % o.sample_every == 0 && !o.json)
            tr.with_full_model([&](const Model<float>& full) { sample = sample_text(full, "The ", o.sample_tokens, o.t.seed + s.step); });
        // Periodic checkpoints, each pair written atomically: a kill loses at most save_every steps.
        const bool save = o.save_every > 0 && s.step % o.save_every == 0 && s.step < stop_at;
        if (!lead) {  // the others only keep in step
            if (save) tr.save(o.out);
            continue;
        }
        const double tps = line["tokens_per_s"].get<double>();
        if (!s.mtp_loss.empty()) line["mtp_loss"] = s.mtp_loss;
        if (!traffic_line.is_null()) line["traffic"] = traffic_line;
        if (o.json) {
            print_json(line);
        } else if (tty) {
            const double eta = elapsed / s.step * (o.t.steps - s.step);
            std::printf("\rstep %5d/%d  loss %.4f  %6.0f tok/s  ETA %4.0f s ", s.step, o.t.steps, s.loss, tps, eta);
            std::fflush(stdout);
        }
        if (eval && !o.json)
            std::printf("%sstep %5d  train loss %.4f  val loss %.4f nats/byte (%.3f bits/byte)  %.0f tok/s%s\n",
                        tty ? "\r" : "", s.step, s.loss, line["val_loss"].get<double>(),
                        line["val_loss"].get<double>() / std::log(2.0), tps, mtp_summary(line).c_str());
        if (!sample.empty()) std::printf("--- sample ---\n%s\n--------------\n", sample.c_str());
        if (save) tr.save(o.out);
    }
    if (!o.out.empty()) tr.save(o.out);
    // The last step's evaluation when it had one (the model has not changed since), else a new one.
    const Trainer::Evaluation ev = evaluated ? *evaluated : tr.evaluation();
    std::string sample;
    tr.with_full_model([&](const Model<float>& full) { sample = sample_text(full, "The ", o.sample_tokens, o.t.seed); });
    if (!lead) return;
    const double val = ev.loss;
    nlohmann::json fin = {{"final", true}, {"val_loss", val}, {"val_bits_per_byte", val / std::log(2.0)},
                          {"steps", tr.steps_done()}, {"seconds", elapsed}, {"sample", sample}};
    add_evaluation(fin, ev);
    const Trainer::StateBytes b = tr.state_bytes();  // rank 0's (every rank holds as much)
    fin["state_bytes"] = {{"weights", b.weights}, {"gradients", b.gradients}, {"moments", b.moments}};
    if (!o.out.empty()) fin["checkpoint"] = o.out;
    if (o.json) return print_json(fin);
    if (!run_experts.empty()) {
        const auto t = traffic_json(layout, run_experts, run_allreduce, m.moe.dim, run_tokens)["mean_per_token"];
        std::printf("\ntraffic per token and rank (mean over %zu ranks, all MoE layers): all-reduce %.0f B sent", run_experts.size(),
                    t["allreduce_sent"].get<double>());
        if (layout.ep > 1)
            std::printf("; dispatch %.0f B sent, combine %.0f B sent; a dispatch crossing once per node (V3) would cross "
                        "%.3f times, %.0f B",
                        t["dispatch_sent"].get<double>(), t["combine_sent"].get<double>(), t["remote_nodes"].get<double>(),
                        t["node_bytes"].get<double>());
        std::printf("\n");
    }
    std::printf("\nvalidation loss %.4f nats/byte = %.3f bits/byte after %d steps (%.0f s)%s%s\n", val, val / std::log(2.0),
                tr.steps_done(), elapsed, o.out.empty() ? "" : (", saved " + o.out).c_str(), mtp_summary(fin).c_str());
    std::printf("--- sample (prompt \"The \", temperature 0.8, top-k 40) ---\nThe %s\n", fin["sample"].get<std::string>().c_str());
}

// -------------------------------------------------------------------------------------- generate
struct GenerateOptions {
    std::string weights, prompt = "The ", attn = "absorb";
    int max_new_tokens = 200;
    SamplingConfig sampling{0.8, 40, 1.0};
    std::uint64_t seed = 1;
    bool json = false, speculative = false;
};

struct Decoded {
    std::vector<Token> tokens;
    double seconds = 0;
    std::size_t cache_floats = 0;
};

// Plain decoding: one forward of the main model per new token. `echo` streams the bytes to stdout.
Decoded decode_plain(const Model<float>& m, const GenerateOptions& o, std::size_t capacity, bool echo) {
    Generator<float> gen(m, o.attn == "naive" ? AttentionCache::naive : AttentionCache::absorbed, capacity);
    Rng rng(o.seed);
    Decoded d;
    const auto t0 = std::chrono::steady_clock::now();
    auto logits = gen.feed(encode_bytes(o.prompt));
    while (int(d.tokens.size()) < o.max_new_tokens && gen.length() < capacity) {
        d.tokens.push_back(sample_token(logits, o.sampling, rng));
        if (echo) std::cout << char(d.tokens.back()) << std::flush;
        logits = gen.feed({d.tokens.back()});
    }
    d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    d.cache_floats = gen.cache_floats();
    return d;
}

// Speculative decoding and plain decoding beside it, each run to its end (eva/mtp.hpp).
void finish(SpeculativeRun& r) {
    while (r.step_speculative()) continue;
    while (r.step_plain()) continue;
}

void run_generate(const GenerateOptions& o) {
    Model<float> m = load_checkpoint(o.weights);  // an eva file or a Hugging Face folder
    if (o.prompt.empty()) throw ConfigError("--prompt must not be empty");
    const std::size_t capacity = std::min<std::size_t>(std::size_t(m.args.max_seq_len), o.prompt.size() + std::size_t(o.max_new_tokens));
    if (o.prompt.size() >= std::size_t(m.args.max_seq_len))
        throw ConfigError("--prompt is " + std::to_string(o.prompt.size()) + " bytes; max_seq_len is " + std::to_string(m.args.max_seq_len));
    if (o.speculative && m.w.mtp.empty())
        throw ConfigError("--speculative needs a model with MTP modules (train one with --mtp 1)");
    if (o.speculative && o.attn == "naive") throw ConfigError("--speculative verifies through the absorbed cache: drop --attn naive");
    if (!o.speculative) {
        if (!o.json) std::cout << o.prompt << std::flush;
        const Decoded d = decode_plain(m, o, capacity, !o.json);
        const double tps = double(d.tokens.size()) / d.seconds;
        if (o.json)
            return print_json({{"prompt", o.prompt}, {"text", decode_bytes(d.tokens)}, {"new_tokens", d.tokens.size()},
                               {"tokens_per_s", tps}, {"attn", o.attn}, {"cache_bytes", d.cache_floats * sizeof(float)}});
        std::printf("\n[%zu tokens, %.0f tokens/s, %s cache %zu bytes]\n", d.tokens.size(), tps, o.attn.c_str(),
                    d.cache_floats * sizeof(float));
        return;
    }
    // Speculative and plain decoding of the same prompt in the same run, twice; each keeps its faster
    // time (the first pass also warms the caches), so the ratio compares like with like.
    SpeculativeRun run(m, encode_bytes(o.prompt), std::size_t(o.max_new_tokens), o.sampling, o.seed);
    finish(run);
    SpeculativeRun again(m, encode_bytes(o.prompt), std::size_t(o.max_new_tokens), o.sampling, o.seed);
    finish(again);
    run.seconds = std::min(run.seconds, again.seconds);
    run.plain_seconds = std::min(run.plain_seconds, again.plain_seconds);
    const SpeculativeStats& st = run.stats();
    const std::vector<Token>& spec = run.tokens;
    const bool identical = spec == run.plain_tokens;
    const double tps = double(spec.size()) / run.seconds, plain_tps = double(run.plain_tokens.size()) / run.plain_seconds;
    const bool greedy = o.sampling.temperature == 0;
    nlohmann::json j = run.to_json();  // the figures the KV panel shows for the same run
    j.update({{"prompt", o.prompt}, {"attn", o.attn}, {"cache_bytes", run.cache_floats() * sizeof(float)},
              {"speculative", true}, {"mtp_depth", m.w.mtp.size()}});
    if (o.json) return print_json(j);
    std::cout << o.prompt << decode_bytes(spec) << '\n';
    std::printf("[%zu tokens in %zu verifying forwards: %zu drafted, %zu accepted (acceptance %.1f%%); %.0f tokens/s vs "
                "%.0f plain in the same run (%.2fx)%s]\n",
                spec.size(), st.rounds, st.drafted, st.accepted, 100 * st.acceptance_rate(), tps, plain_tps,
                tps / plain_tps, greedy ? (identical ? "; identical to plain greedy" : "; DIFFERS from plain greedy") : "");
}

}  // namespace

void add_model_commands(CLI::App& app) {
    const auto attn_check = CLI::IsMember({"absorb", "naive"});
    const auto balance_check = CLI::IsMember({"none", "aux-free", "seq-loss", "aux-loss"});
    {
        auto o = std::make_shared<InitOptions>();
        auto* c = app.add_subcommand("init", "Write a freshly initialized model (safetensors, official tensor names)");
        c->add_option("--config", o->config, "Preset (mini, baby, tiny, v2-lite, v2, v3) or ModelArgs JSON file")->capture_default_str();
        c->add_option("--seed", o->seed, "Initialization seed")->capture_default_str();
        c->add_option("--std", o->std, "Std of the normal init of Linear weights (DeepSeek-V3: 0.006)")->capture_default_str();
        c->add_option("--balance", o->balance, "MoE balancing the model will train with")->capture_default_str()->check(balance_check);
        c->add_option("--out", o->out, "Output .safetensors file")->required();
        c->callback([o] { run_init(*o); });
    }
    {
        auto o = std::make_shared<ForwardOptions>();
        auto* c = app.add_subcommand("forward", "Logits of every position; with --targets also the loss and all gradients");
        c->add_option("--weights", o->weights, "Model: an eva .safetensors file or a Hugging Face checkpoint folder")->required()->check(CLI::ExistingPath);
        c->add_option("--tokens", o->tokens, "Token ids, space separated, e.g. \"72 101 108\"")->required();
        c->add_option("--out", o->out, "Write the logits [T, vocab] as float32 .npy");
        c->add_option("--attn", o->attn, "KV cache used to compute the logits")->capture_default_str()->check(attn_check);
        c->add_option("--targets", o->targets, "Next-token targets (as many as --tokens): compute the loss");
        c->add_option("--grads-out", o->grads_out, "With --targets: write every parameter's gradient (.safetensors)");
        c->add_flag("--json", o->json, "Print one JSON object");
        c->callback([o] {
            if (!o->grads_out.empty() && o->targets.empty()) throw ConfigError("--grads-out needs --targets");
            run_forward(*o);
        });
    }
    {
        auto o = std::make_shared<TrainOptions>();
        auto* c = app.add_subcommand("train", "Train a model on text; prints losses, tokens/s and samples");
        c->add_option("--config", o->config, "Preset or ModelArgs JSON file")->capture_default_str();
        c->add_option("--data", o->data, "Text file, or a fortunes folder (default: Debian's fortunes)")->capture_default_str();
        c->add_option("--steps", o->t.steps, "Optimizer steps")->capture_default_str()->check(kPositive);
        c->add_option("--batch", o->t.batch, "Sequences per step")->capture_default_str()->check(CLI::Range(1, 4096));
        c->add_option("--seq-len", o->t.seq_len, "Tokens per sequence")->capture_default_str()->check(kPositive);
        c->add_option("--lr", o->t.schedule.lr, "Peak learning rate")->capture_default_str();
        c->add_option("--warmup", o->t.schedule.warmup_steps, "Linear warmup steps")->capture_default_str();
        c->add_option("--seed", o->t.seed, "Seed of the init and of the data order")->capture_default_str();
        c->add_option("--balance", o->balance, "MoE balancing")->capture_default_str()->check(balance_check);
        c->add_option("--gamma", o->gamma, "Bias update speed of aux-free balancing")->capture_default_str();
        c->add_option("--alpha", o->alpha, "Weight of the sequence-wise / auxiliary balance loss")->capture_default_str();
        c->add_option("--precision", o->precision,
                      "Linear GEMMs inside the blocks: fp32, fp8 (DeepSeek-V3: E4M3, 1x128 tiles, 128x128 blocks, "
                      "promotion every 128), fp8-tensor (one scale per tensor), fp8-e5m2")
            ->capture_default_str()->check(CLI::IsMember({"fp32", "fp8", "fp8-tensor", "fp8-e5m2"}));
        c->add_option("--mtp", o->mtp,
                      "Multi-token prediction modules D (DeepSeek-V3: 1; default: the config's n_mtp_layers, mini: 0)")
            ->check(CLI::Range(0, 8));
        c->add_option("--mtp-lambda", o->t.mtp_lambda, "Weight of the MTP loss (lambda/D)*sum_k CE_k (DeepSeek-V3: 0.3, then 0.1)")
            ->capture_default_str()->check(CLI::Range(0.0, 10.0));
        c->add_option("--shards", o->t.shards,
                      "Gradient shards per step: the batch is cut into this many pieces, summed as a fixed tree "
                      "(0: 4, 2 or 1, the largest dividing --batch, alone or under mpirun); the rank count must divide it, "
                      "and a single process given the same --shards trains bit for bit as the ranks")
            ->capture_default_str()->check(CLI::Range(0, 4096));
        c->add_option("--ep", o->ep,
                      "Expert parallelism under mpirun: groups of E ranks share the routed experts (E divides the ranks and "
                      "the experts); tokens travel to their experts' ranks and back (MPI_Alltoallv); same results bit for bit. "
                      "In one process: the traffic E ranks would have")
            ->capture_default_str()->check(CLI::Range(1, 4096));
        c->add_option("--ranks-per-node", o->ranks_per_node,
                      "With --ep: ranks per (virtual) node, so the experts sit on E/R nodes (sets --nodes)")
            ->check(CLI::Range(1, 4096));
        c->add_option("--nodes", o->t.nodes,
                      "Nodes the routed experts are split into, equal contiguous blocks (a single process emulates --ep's layout)")
            ->capture_default_str()->check(CLI::Range(1, 4096));
        c->add_option("--max-nodes", o->t.max_nodes,
                      "Node-limited routing (DeepSeek-V3: 4): each token's experts on at most M nodes, chosen by the sum of "
                      "their K/M best affinities (0: unlimited)")
            ->capture_default_str()->check(CLI::Range(0, 4096));
        c->add_option("--eval-every", o->eval_every, "Validation loss every N steps")->capture_default_str()->check(kPositive);
        c->add_option("--eval-batches", o->t.eval_batches,
                      "Batches per validation loss: batch x N windows spread evenly over the validation text "
                      "(enough to cover it gives the loss of the whole text)")
            ->capture_default_str()->check(CLI::Range(1, 4096));
        c->add_option("--sample-every", o->sample_every, "Print a sample every N steps (0: only at the end)")->capture_default_str();
        c->add_option("--out", o->out, "Save a resumable checkpoint here at the end (and with --save-every)");
        c->add_option("--save-every", o->save_every, "Also save the checkpoint every N steps (needs --out)")
            ->capture_default_str()->check(kNonNegative);
        c->add_option("--stop-after", o->stop_after,
                      "Stop after N steps of this invocation and save (needs --out); --resume continues the run")
            ->check(kPositive);
        c->add_option("--resume", o->resume,
                      "Continue a checkpoint saved with --out: its config, schedule and data order (--steps: a new total)")
            ->check(CLI::ExistingFile);
        c->add_option("--threads", o->threads,
                      "CPU threads (0: EVA_NUM_THREADS, else OMP_NUM_THREADS, else every core); results are identical for any count")
            ->capture_default_str()->check(kNonNegative);
        c->add_flag("--json", o->json, "JSON lines instead of text");
        c->callback([o, c] {
            for (const CLI::Option* opt : c->get_options())
                if (opt->count() > 0) o->given.insert(opt->get_name());
            run_train(*o);
        });
    }
    {
        auto o = std::make_shared<GenerateOptions>();
        auto* c = app.add_subcommand("generate", "Generate text from a checkpoint");
        c->add_option("--weights", o->weights, "Model: an eva .safetensors file or a Hugging Face checkpoint folder")->required()->check(CLI::ExistingPath);
        c->add_option("--prompt", o->prompt, "Prompt text")->capture_default_str();
        c->add_option("--max-new-tokens", o->max_new_tokens, "Bytes to generate")->capture_default_str()->check(kPositive);
        c->add_option("--temperature", o->sampling.temperature, "0: greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
        c->add_option("--top-k", o->sampling.top_k, "Keep the k most likely (0: off)")->capture_default_str()->check(kNonNegative);
        c->add_option("--top-p", o->sampling.top_p, "Nucleus sampling (1: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
        c->add_option("--seed", o->seed, "Sampling seed")->capture_default_str();
        c->add_option("--attn", o->attn, "KV cache")->capture_default_str()->check(attn_check);
        c->add_flag("--speculative", o->speculative,
                    "Draft with the model's MTP modules and verify with one forward of the main model per round "
                    "(lossless: greedy output is plain greedy's); also times plain decoding for the speed ratio");
        c->add_flag("--json", o->json, "Print one JSON object");
        c->callback([o] { run_generate(*o); });
    }
}

}  // namespace eva::cli
