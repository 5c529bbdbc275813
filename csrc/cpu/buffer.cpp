// TrajectoryBuffer (see hiper/buffer.h). append() compacts masked tokens into the arenas;
// pack() writes every output row once, rows split over threads.
#include "hiper/buffer.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "cpu/parallel.h"

namespace hiper {

TrajectoryBuffer::TrajectoryBuffer(index_t num_envs) {
  if (num_envs <= 0) throw std::invalid_argument("num_envs: must be positive, got " + std::to_string(num_envs));
  turns_of_env_.assign(static_cast<size_t>(num_envs), 0);
  finished_.assign(static_cast<size_t>(num_envs), 0);
}

void TrajectoryBuffer::clear() {
  std::fill(turns_of_env_.begin(), turns_of_env_.end(), 0);
  std::fill(finished_.begin(), finished_.end(), flag_t{0});
  prompt_arena_.clear();
  response_arena_.clear();
  records_.clear();
  max_prompt_len_ = max_response_len_ = 0;
}

namespace {

// Appends the masked tokens of one row to `arena`; returns how many.
index_t append_masked(std::vector<int64_t>& arena, const int64_t* tokens, const flag_t* mask, index_t cols) {
  index_t kept = 0;
  for (index_t j = 0; j < cols; ++j) kept += mask[j] != 0;
  const size_t at = arena.size();
  arena.resize(at + static_cast<size_t>(kept));
  int64_t* out = arena.data() + at;
  for (index_t j = 0; j < cols; ++j)
    if (mask[j] != 0) *out++ = tokens[j];
  return kept;
}

}  // namespace

void TrajectoryBuffer::append(index_t k, const index_t* env_ids, const int64_t* prompt_tokens,
                              const flag_t* prompt_mask, index_t prompt_cols, const int64_t* response_tokens,
                              const flag_t* response_mask, index_t response_cols, const float* rewards,
                              const flag_t* dones, const flag_t* valid, const flag_t* is_new_subgoal) {
  // Validate everything before changing anything, so a failed call leaves the buffer intact.
  std::vector<flag_t> seen(turns_of_env_.size(), 0);
  for (index_t r = 0; r < k; ++r) {
    const index_t e = env_ids[r];
    if (e < 0 || e >= num_envs())
      throw std::invalid_argument("env_ids: " + std::to_string(e) + " is not in [0, " + std::to_string(num_envs()) + ")");
    if (finished_[static_cast<size_t>(e)])
      throw std::invalid_argument("env_ids: environment " + std::to_string(e) + " already finished its episode");
    if (seen[static_cast<size_t>(e)]++)
      throw std::invalid_argument("env_ids: environment " + std::to_string(e) + " appears twice in one append");
  }
  records_.reserve(records_.size() + static_cast<size_t>(k));
  for (index_t r = 0; r < k; ++r) {
    TurnRecord rec;
    rec.env = env_ids[r];
    rec.turn = turns_of_env_[static_cast<size_t>(rec.env)]++;
    rec.prompt_offset = static_cast<index_t>(prompt_arena_.size());
    rec.prompt_len = append_masked(prompt_arena_, prompt_tokens + r * prompt_cols, prompt_mask + r * prompt_cols,
                                   prompt_cols);
    rec.response_offset = static_cast<index_t>(response_arena_.size());
    rec.response_len = append_masked(response_arena_, response_tokens + r * response_cols,
                                     response_mask + r * response_cols, response_cols);
    rec.reward = rewards[r];
    rec.done = dones[r] != 0;
    rec.valid = valid == nullptr ? 1 : valid[r] != 0;
    rec.is_new_subgoal = is_new_subgoal == nullptr ? 0 : is_new_subgoal[r] != 0;
    if (rec.done) finished_[static_cast<size_t>(rec.env)] = 1;
    max_prompt_len_ = std::max(max_prompt_len_, rec.prompt_len);
    max_response_len_ = std::max(max_response_len_, rec.response_len);
    records_.push_back(rec);
  }
}

void TrajectoryBuffer::pack(const PackParams& p) const {
  const index_t n = num_turns(), P = p.prompt_width, R = p.response_width, W = P + R;
  // Row of each record, trajectory-major: counting sort on the environment (turns of one
  // environment were appended in order).
  std::vector<index_t> row_of(static_cast<size_t>(n));
  std::vector<index_t> next(static_cast<size_t>(num_envs()) + 1, 0);
  for (const TurnRecord& rec : records_) ++next[static_cast<size_t>(rec.env) + 1];
  for (index_t e = 0; e < num_envs(); ++e) next[static_cast<size_t>(e) + 1] += next[static_cast<size_t>(e)];
  for (index_t e = 0; e <= num_envs(); ++e) p.traj_offsets[e] = next[static_cast<size_t>(e)];
  for (index_t t = 0; t < n; ++t) row_of[static_cast<size_t>(t)] = next[static_cast<size_t>(records_[t].env)]++;

  cpu::parallel_for(n, n * W, [&](index_t t) {
    const TurnRecord& rec = records_[static_cast<size_t>(t)];
    const index_t i = row_of[static_cast<size_t>(t)];
    const index_t pad_left = P - rec.prompt_len;
    int64_t* prow = p.prompts + i * P;
    flag_t* pmask = p.prompt_mask + i * P;
    std::fill(prow, prow + pad_left, p.pad_id);
    std::memset(pmask, 0, static_cast<size_t>(pad_left));
    // (An arena with no token yet has no storage: memcpy must not see its null pointer.)
    if (rec.prompt_len > 0)
      std::memcpy(prow + pad_left, prompt_arena_.data() + rec.prompt_offset, sizeof(int64_t) * rec.prompt_len);
    std::memset(pmask + pad_left, 1, static_cast<size_t>(rec.prompt_len));
    int64_t* rrow = p.responses + i * R;
    flag_t* rmask = p.response_mask + i * R;
    if (rec.response_len > 0)
      std::memcpy(rrow, response_arena_.data() + rec.response_offset, sizeof(int64_t) * rec.response_len);
    std::fill(rrow + rec.response_len, rrow + R, p.pad_id);
    std::memset(rmask, 1, static_cast<size_t>(rec.response_len));
    std::memset(rmask + rec.response_len, 0, static_cast<size_t>(R - rec.response_len));
    std::memcpy(p.input_ids + i * W, prow, sizeof(int64_t) * P);
    std::memcpy(p.input_ids + i * W + P, rrow, sizeof(int64_t) * R);
    std::memcpy(p.attention_mask + i * W, pmask, static_cast<size_t>(P));
    std::memcpy(p.attention_mask + i * W + P, rmask, static_cast<size_t>(R));
    p.env_ids[i] = rec.env;
    p.turn_idx[i] = rec.turn;
    p.rewards[i] = rec.reward;
    p.dones[i] = rec.done;
    p.valid[i] = rec.valid;
    p.is_new_subgoal[i] = rec.is_new_subgoal;
  });
}

}  // namespace hiper
