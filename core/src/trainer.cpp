// eva — the training loop.
#include "eva/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <chrono>

#include "eva/checkpoint.hpp"
#include "eva/error.hpp"
#include "eva/safetensors.hpp"

namespace eva {

void TrainConfig::validate(const ModelArgs& args) const {
    auto require = [](bool ok, const std::string& msg) {
        if (!ok) throw ConfigError(msg);
    };
    require(batch > 0 && batch <= 4096, "batch must be in 1..4096");
    require(seq_len > 0 && seq_len <= args.max_seq_len,
            "seq_len must be in 1..max_seq_len (" + std::to_string(args.max_seq_len) + ")");
    require(steps > 0, "steps must be positive");
    require(schedule.lr > 0 && schedule.lr < 1, "lr must be in (0, 1)");
    require(schedule.warmup_steps >= 0, "warmup must be >= 0");
    require(grad_clip >= 0, "grad_clip must be >= 0 (0: off)");
    require(eval_batches > 0, "eval_batches must be positive");
    require(std::isfinite(mtp_lambda) && mtp_lambda >= 0 && mtp_lambda <= 10, "mtp_lambda must be in 0..10");
    require(args.n_mtp_layers < seq_len, "seq_len must exceed n_mtp_layers (" + std::to_string(args.n_mtp_layers) +
                                             "): MTP module k trains on seq_len - k positions");
}

nlohmann::json TrainConfig::to_json() const {
    return {{"batch", batch}, {"seq_len", seq_len}, {"steps", steps}, {"lr", schedule.lr},
            {"warmup_steps", schedule.warmup_steps}, {"min_lr_ratio", schedule.min_lr_ratio},
            {"beta1", adamw.beta1}, {"beta2", adamw.beta2}, {"eps", adamw.eps}, {"weight_decay", adamw.weight_decay},
            {"grad_clip", grad_clip}, {"seed", seed}, {"eval_batches", eval_batches},
            {"precision", to_string(precision)}, {"mtp_lambda", mtp_lambda}};
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
    TrainConfig c;
    try {
        c.batch = j.at("batch");
        c.seq_len = j.at("seq_len");
        c.steps = j.at("steps");
        c.schedule = {j.at("lr"), j.at("warmup_steps"), c.steps, j.at("min_lr_ratio")};
        c.adamw = {j.at("beta1"), j.at("beta2"), j.at("eps"), j.at("weight_decay")};
        c.grad_clip = j.at("grad_clip");
        c.seed = j.at("seed");
        c.eval_batches = j.at("eval_batches");
        c.precision = parse_linear_precision(j.at("precision").get<std::string>());
        if (j.contains("mtp_lambda")) c.mtp_lambda = j.at("mtp_lambda");  // states written before MTP lack it
    } catch (const nlohmann::json::exception& e) {
        throw FileError(std::string("training state: ") + e.what());
    }
    return c;
}

std::vector<Param> trainable_params(ModelWeights<float>& values, ModelWeights<float>& grads) {
    std::vector<Param> out;
    auto v = named_tensors(values);
    auto g = named_tensors(grads);
    for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i].trainable) out.push_back({v[i].name, v[i].data, g[i].data, v[i].size(), v[i].decay});
    return out;
}

Trainer::Trainer(Model<float>& m, const Corpus& corpus, const TrainConfig& cfg)
    : m_(m), corpus_(corpus), cfg_(cfg), opt_(cfg.adamw), data_(cfg.seed, 1), grad_(model_zeros(m)),
      params_(trainable_params(m.w, grad_)) {
    cfg_.schedule.total_steps = cfg_.steps;
    cfg_.validate(m.args);
    m_.precision = cfg_.precision;
    m_.mtp_lambda = cfg_.mtp_lambda;
    if (corpus.train.size() <= std::size_t(cfg.seq_len) || corpus.validation.size() <= std::size_t(cfg.seq_len))
        throw ConfigError("the corpus is too small for seq_len " + std::to_string(cfg.seq_len));
}

StepStats Trainer::step() {
    const auto t0 = std::chrono::steady_clock::now();
    const Batch b = sample_batch(corpus_.train, cfg_.batch, cfg_.seq_len, data_);
    for (const Param& p : params_) std::fill(p.grad, p.grad + p.size, 0.0f);
    const Loss loss = model_loss_and_grad(m_, b.inputs, b.targets, cfg_.batch, cfg_.seq_len, grad_, &acts_);
    const auto& ps = params_;
    StepStats s;
    s.grad_norm = clip_grad_norm(ps, cfg_.grad_clip);
    s.lr = learning_rate(cfg_.schedule, step_);
    opt_.step(ps, s.lr);
    update_balance_bias(m_, acts_);
    for (std::size_t l = 0; l < m_.w.layers.size(); ++l)
        if (!m_.w.layers[l].dense) {
            const RoutingStats r = routing_stats(m_.moe, acts_.layers[l].moe.routing, m_.w.layers[l].moe.bias);
            s.max_vio.push_back(r.max_vio);
            s.expert_load.push_back(r.load_fraction);
        }
    s.step = ++step_;
    s.loss = loss.cross_entropy;
    s.balance_loss = loss.balance;
    s.mtp_loss = loss.mtp_cross_entropy;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

Trainer::Evaluation Trainer::evaluation(bool validation) {
    const std::vector<Token>& tokens = validation ? corpus_.validation : corpus_.train;
    const std::size_t windows = std::size_t(cfg_.batch) * std::size_t(cfg_.eval_batches);
    const std::size_t T = std::size_t(cfg_.seq_len), span = tokens.size() - T - 1;
    Evaluation r;
    r.mtp_loss.assign(m_.w.mtp.size(), 0.0);
    r.mtp_accuracy.assign(m_.w.mtp.size(), 0.0);
    for (int e = 0; e < cfg_.eval_batches; ++e) {
        std::vector<Token> in, out;
        for (std::size_t w = 0; w < std::size_t(cfg_.batch); ++w) {
            const std::size_t start = (std::size_t(e) * cfg_.batch + w) * span / std::max<std::size_t>(1, windows - 1);
            in.insert(in.end(), tokens.begin() + start, tokens.begin() + start + T);
            out.insert(out.end(), tokens.begin() + start + 1, tokens.begin() + start + T + 1);
        }
        const Loss l = model_loss(m_, in, out, cfg_.batch, cfg_.seq_len);
        r.loss += l.cross_entropy;
        for (std::size_t k = 0; k < l.mtp_cross_entropy.size(); ++k) {
            r.mtp_loss[k] += l.mtp_cross_entropy[k];
            r.mtp_accuracy[k] += l.mtp_accuracy[k];
        }
    }
    r.loss /= cfg_.eval_batches;
    for (std::size_t k = 0; k < r.mtp_loss.size(); ++k) {
        r.mtp_loss[k] /= cfg_.eval_batches;
        r.mtp_accuracy[k] /= cfg_.eval_batches;
    }
    return r;
}

std::string Trainer::optimizer_path(const std::string& path) {
    const std::string ext = ".safetensors";
    if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
        return path.substr(0, path.size() - ext.size()) + ".optim" + ext;
    return path + ".optim";
}

void Trainer::save(const std::string& path) {
    SafetensorsWriter opt;
    const auto& ps = params_;
    auto& m = opt_.first_moments();
    auto& v = opt_.second_moments();
    if (m.empty()) {  // saved before the first step: AdamW's moments start at zero
        for (const Param& p : ps) {
            m.emplace_back(p.size, 0.0f);
            v.emplace_back(p.size, 0.0f);
        }
    }
    for (std::size_t i = 0; i < ps.size(); ++i) {
        opt.add(ps[i].name + ".exp_avg", {ps[i].size}, m[i].data());
        opt.add(ps[i].name + ".exp_avg_sq", {ps[i].size}, v[i].data());
    }
    opt.write(optimizer_path(path));
    save_model(m_, path, {{"training", {{"step", step_}, {"adamw_steps", opt_.steps()}, {"data_position", data_.position()},
                                        {"config", cfg_.to_json()}}}});
}

void Trainer::resume(const std::string& path, const nlohmann::json& t) {
    try {
        step_ = t.at("step");
        opt_.set_steps(t.at("adamw_steps"));
        data_.seek(t.at("data_position"));
    } catch (const nlohmann::json::exception& e) {
        throw FileError(path + ": training state: " + e.what());
    }
    const auto f = SafetensorsFile::read(optimizer_path(path));
    const auto& ps = params_;
    auto& m = opt_.first_moments();
    auto& v = opt_.second_moments();
    m.assign(ps.size(), {});
    v.assign(ps.size(), {});
    for (std::size_t i = 0; i < ps.size(); ++i) {
        m[i].resize(ps[i].size);
        v[i].resize(ps[i].size);
        f.read_f32(ps[i].name + ".exp_avg", {ps[i].size}, m[i].data());
        f.read_f32(ps[i].name + ".exp_avg_sq", {ps[i].size}, v[i].data());
    }
}

}  // namespace eva
