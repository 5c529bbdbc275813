// Batched trajectory buffer: B parallel environments append turns as they happen; pack()
// lays them out as the padded tensors a trainer consumes.
//
// Storage is two growing token arenas (prompt ids, response ids) and one record per turn;
// clear() empties them but keeps their capacity, so a training run allocates once. pack()
// emits rows trajectory-major (environment 0's turns in order, then environment 1's, ...),
// which is also the order the HAE layout wants.
#pragma once

#include <string>
#include <vector>

#include "hiper/common.h"

namespace hiper {

struct TurnRecord {
  index_t env = 0;
  index_t turn = 0;
  index_t prompt_offset = 0, prompt_len = 0;
  index_t response_offset = 0, response_len = 0;
  float reward = 0.0f;
  flag_t done = 0, valid = 1, is_new_subgoal = 0;
};

// Output views for pack(); every pointer is required. N rows, P prompt and R response columns.
struct PackParams {
  index_t rows = 0, prompt_width = 0, response_width = 0;
  int64_t pad_id = 0;
  int64_t* prompts = nullptr;         // (N, P) left-padded
  flag_t* prompt_mask = nullptr;      // (N, P)
  int64_t* responses = nullptr;       // (N, R) right-padded
  flag_t* response_mask = nullptr;    // (N, R)
  int64_t* input_ids = nullptr;       // (N, P + R) prompt then response
  flag_t* attention_mask = nullptr;   // (N, P + R)
  int64_t* env_ids = nullptr;         // (N,)
  int64_t* turn_idx = nullptr;        // (N,)
  float* rewards = nullptr;           // (N,)
  flag_t* dones = nullptr;            // (N,)
  flag_t* valid = nullptr;            // (N,)
  flag_t* is_new_subgoal = nullptr;   // (N,)
  int64_t* traj_offsets = nullptr;    // (B + 1,) rows of environment b: [traj_offsets[b], traj_offsets[b+1])
};

class TrajectoryBuffer {
 public:
  explicit TrajectoryBuffer(index_t num_envs);

  index_t num_envs() const { return static_cast<index_t>(turns_of_env_.size()); }
  index_t num_turns() const { return static_cast<index_t>(records_.size()); }
  index_t turns_of(index_t env) const { return turns_of_env_.at(static_cast<size_t>(env)); }
  bool finished(index_t env) const { return finished_.at(static_cast<size_t>(env)) != 0; }
  index_t max_prompt_len() const { return max_prompt_len_; }
  index_t max_response_len() const { return max_response_len_; }

  // Appends k turns, one per listed environment. Token rows are (k, Lp) / (k, Lr) with masks
  // marking the real tokens (any alignment: the masked tokens are kept in order). Throws
  // std::invalid_argument naming the argument for an unknown or finished environment or an
  // environment listed twice.
  void append(index_t k, const index_t* env_ids, const int64_t* prompt_tokens, const flag_t* prompt_mask,
              index_t prompt_cols, const int64_t* response_tokens, const flag_t* response_mask,
              index_t response_cols, const float* rewards, const flag_t* dones, const flag_t* valid,
              const flag_t* is_new_subgoal);

  // Fills the pack outputs (sizes from pack_shape()).
  void pack(const PackParams& p) const;

  // Forgets every turn (capacity kept) and reopens every environment.
  void clear();

 private:
  std::vector<index_t> turns_of_env_;
  std::vector<flag_t> finished_;
  std::vector<int64_t> prompt_arena_, response_arena_;
  std::vector<TurnRecord> records_;
  index_t max_prompt_len_ = 0, max_response_len_ = 0;
};

}  // namespace hiper
