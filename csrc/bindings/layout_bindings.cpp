// Binding of the trajectory layout. The Python object owns the C++ vectors; its array
// properties are read-only views, so a layout cannot be edited into an inconsistent state.
#include <memory>

#include "bindings/arrays.h"
#include "bindings/ops.h"
#include "bindings/threads.h"
#include "hiper/layout.h"

namespace hiper::bindings {
namespace {

template <typename T>
py::array readonly_view(const std::vector<T>& v, py::handle owner) {
  py::array_t<T> arr({static_cast<py::ssize_t>(v.size())}, {sizeof(T)}, v.data(), owner);
  arr.attr("setflags")(py::arg("write") = false);
  return arr;
}

std::shared_ptr<Layout> build_layout_py(const py::object& traj_ids, const py::object& turn_idx,
                                        const py::object& is_new_subgoal) {
  py::array ids = checked_array(traj_ids, "traj_ids", Kind::kInt64, {-1});
  const auto n = ids.shape(0);
  py::array turns = checked_array(turn_idx, "turn_idx", Kind::kInt64, {n});
  py::array sw = checked_array(is_new_subgoal, "is_new_subgoal", Kind::kFlag, {n}, /*optional=*/true);
  auto layout = std::make_shared<Layout>();
  {
    ReleaseGil release;
    *layout = build_layout(n, in_ptr<int64_t>(ids), in_ptr<int64_t>(turns), in_ptr<flag_t>(sw));
  }
  return layout;
}

}  // namespace

void register_layout(py::module_& m) {
  py::class_<Layout, std::shared_ptr<Layout>>(m, "Layout", "Rows grouped by trajectory and segment (CSR).")
      .def_property_readonly("num_rows", [](const Layout& l) { return l.view().num_rows; })
      .def_property_readonly("num_trajectories", [](const Layout& l) { return l.view().num_trajs; })
      .def_property_readonly("num_segments", [](const Layout& l) { return l.view().num_segments; })
      .def_property_readonly("order", [](py::object self) { return readonly_view(self.cast<const Layout&>().order, self); })
      .def_property_readonly("traj_offsets",
                             [](py::object self) { return readonly_view(self.cast<const Layout&>().traj_offsets, self); })
      .def_property_readonly("seg_offsets",
                             [](py::object self) { return readonly_view(self.cast<const Layout&>().seg_offsets, self); })
      .def_property_readonly("traj_seg_offsets", [](py::object self) {
        return readonly_view(self.cast<const Layout&>().traj_seg_offsets, self);
      })
      .def_property_readonly("is_boundary",
                             [](py::object self) {
                               py::array a = readonly_view(self.cast<const Layout&>().is_boundary, self);
                               return a.view("bool");
                             })
      .def_property_readonly("position",
                             [](py::object self) { return readonly_view(self.cast<const Layout&>().position, self); });

  m.def("build_layout", &build_layout_py, py::arg("traj_ids"), py::arg("turn_idx"), py::arg("is_new_subgoal") = py::none(),
        "Group rows by trajectory (int64 ids), order by turn (int64, >= 0, unique per trajectory) and cut segments "
        "at turn 0 and at every row whose is_new_subgoal flag is set.");
}

}  // namespace hiper::bindings
