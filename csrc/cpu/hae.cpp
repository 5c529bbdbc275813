// CPU launchers for reward shaping, HAE and the subgoal-consistency flags: one trajectory per
// iteration. A turn costs ~10 ns (a chain of dependent multiply-adds); waking a worker of the
// thread pool costs tens of microseconds, so threads start paying from ~30k turns (work = 2
// per turn against the 64k grain of parallel.h).
#include "cpu/launchers.h"
#include "cpu/parallel.h"

namespace hiper::cpu {

void shape_rewards(const ShapingParams& p) {
  parallel_for(p.layout.num_trajs, p.layout.num_rows * 2, [&](index_t t) { shape_trajectory<double>(p, t); });
}

void hae(const HAEParams& p) {
  parallel_for(p.layout.num_trajs, p.layout.num_rows * 2, [&](index_t t) { hae_trajectory<double>(p, t); });
}

template <typename token_t>
void subgoal_changed(const ConsistencyParams<token_t>& p) {
  parallel_for(p.layout.num_trajs, p.layout.num_rows * 8,
               [&](index_t t) { consistency_trajectory<token_t>(p, t); });
}
template void subgoal_changed<int64_t>(const ConsistencyParams<int64_t>&);
template void subgoal_changed<int32_t>(const ConsistencyParams<int32_t>&);

}  // namespace hiper::cpu
