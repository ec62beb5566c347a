// Status propagation helpers used across engine/ (and by server/).
//
//   KILN_RETURN_IF_ERROR(expr);             // returns expr's status when not OK
//   KILN_ASSIGN_OR_RETURN(auto x, expr);    // x = *expr, or returns expr's status
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KILN_STATUS_CONCAT_INNER_(a, b) a##b
#define KILN_STATUS_CONCAT_(a, b) KILN_STATUS_CONCAT_INNER_(a, b)

#define KILN_RETURN_IF_ERROR(expr)                        \
  do {                                                    \
    ::absl::Status kiln_status_ = (expr);                 \
    if (!kiln_status_.ok()) return kiln_status_;          \
  } while (false)

#define KILN_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_STATUS_CONCAT_(kiln_statusor_, __LINE__), lhs, expr)

#define KILN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
