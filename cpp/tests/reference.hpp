// Scalar long double reference of the focal loss and its gradients, written in
// the stable forms of shared/NUMERICS.md so that it is accurate to a small
// fraction of a double ulp wherever the result is a normal double:
//   - every exponent that can be large (z_t, z_k - m) is kept as an exact
//     pair hi + lo (TwoSum of the double inputs, in long double);
//   - q^gamma = exp(gamma * log q) forms gamma * hi exactly with fmal, so the
//     amplification of exp (|gamma log q| times the argument's error) never
//     meets a rounded argument;
//   - 1 - p is never formed by subtraction for a probable class.
// With x87 long double (64-bit significand, 11 more bits than double) the
// remaining error is ~1e-3 double ulp; with a 53-bit long double (MSVC, some
// ARM ABIs) the reference is only as good as double and the ulp figures mean
// less (the test prints which).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace fnref {

using LD = long double;

// x = hi + lo, not necessarily normalized.
struct DD {
  LD hi, lo;
  LD value() const { return hi + lo; }
};

// a - b exactly, as a pair (Knuth's TwoSum).
inline DD diff(LD a, LD b) {
  const LD s = a - b;
  const LD bb = s - a;
  const LD e = (a - (s - bb)) + (-b - bb);
  return {s, e};
}

// exp(g * x) for x = hi + lo: g * hi split exactly with fmal, so |g x| up to
// ~11000 costs no accuracy. g == 0 gives 1 (also for x = -inf).
inline LD exp_scaled(LD g, DD x) {
  if (g == 0) return 1.0L;
  if (std::isinf(x.hi)) return x.hi < 0 ? 0.0L : INFINITY;
  const LD p = g * x.hi;
  const LD e = std::fma(g, x.hi, -p);
  return std::exp(p) * std::exp(e + g * x.lo);
}

// ---------------------------------------------------------------------------
// Binary focal loss.

struct Sigmoid {
  LD loss;   // FL
  LD grad;   // dFL/dz
  LD gscale; // size of the terms the gradient is a difference of (soft targets)
};

// alpha < 0: no weighting.
inline void alphas(LD alpha, LD& a_pos, LD& a_neg) {
  if (alpha < 0) {
    a_pos = a_neg = 1;
  } else {
    a_pos = alpha;
    a_neg = 1 - alpha;
  }
}

// Hard label.
//   e = exp(-|z|), l = log1p(e), -log p = max(-z_t, 0) + l, log q = -(max(z_t, 0) + l),
//   FL = alpha_t q^g (-log p), dFL/dz = -s alpha_t q^g (g p (-log p) + q).
inline Sigmoid sigmoid_hard(LD z, bool pos, LD alpha, LD gamma) {
  LD a_pos, a_neg;
  alphas(alpha, a_pos, a_neg);
  const LD at = pos ? a_pos : a_neg;
  if (std::isnan(z)) return {z, z, 0};
  const LD zt = pos ? z : -z;
  const LD e = std::exp(-std::fabs(z));
  const LD l = std::log1p(e);
  const LD nlogp = (zt < 0 ? -zt : 0) + l;
  const DD logq{-(zt > 0 ? zt : 0), -l};
  const LD p = zt >= 0 ? 1 / (1 + e) : e / (1 + e);
  const LD q = zt >= 0 ? e / (1 + e) : 1 / (1 + e);
  const LD qg = exp_scaled(gamma, logq);
  const LD w = at * qg;
  const LD pnl = p == 0 ? 0 : p * nlogp;
  const LD g = -w * (gamma * pnl + q);
  return {w * nlogp, pos ? g : -g, 0};
}

// Soft target y in (0, 1); y exactly 0 or 1 is the hard label.
//   ce = max(z, 0) - y z + l, u = p (1 - y) + q y, alpha_t = a y + (1 - a)(1 - y),
//   FL = alpha_t u^g ce, dFL/dz = alpha_t u^g (g p q (1 - 2y) ce / u + (p - y)).
inline Sigmoid sigmoid_soft(LD z, LD y, LD alpha, LD gamma) {
  if (y == 0 || y == 1) return sigmoid_hard(z, y == 1, alpha, gamma);
  LD a_pos, a_neg;
  alphas(alpha, a_pos, a_neg);
  const LD e = std::exp(-std::fabs(z));
  const LD l = std::log1p(e);
  const LD p = z >= 0 ? 1 / (1 + e) : e / (1 + e);
  const LD q = z >= 0 ? e / (1 + e) : 1 / (1 + e);
  const LD omy = 1 - y;
  const LD ce = (z > 0 ? z * omy : -z * y) + l;
  const LD u = p * omy + q * y;
  const LD at = a_pos * y + a_neg * omy;
  const LD ug = exp_scaled(gamma, {std::log(u), 0});
  const LD w = at * ug;
  const LD pq = p * q;
  const LD t1 = pq == 0 ? 0 : gamma * pq * (1 - 2 * y) * ce / u;
  const LD pmy = p * omy - q * y;  // p - y
  return {w * ce, w * (t1 + pmy), w * (std::fabs(t1) + u)};
}

// ---------------------------------------------------------------------------
// Softmax over one row z_0 .. z_{C-1}: per-class log p_k, log(1 - p_k), p_k,
// 1 - p_k, all to long double accuracy relative to their own size.
struct SoftmaxRow {
  std::vector<DD> logp, logq;
  std::vector<LD> p, q;
  LD s_other;  // sum over k != arg-max of exp(z_k - max z): 1 - p_max = s_other / S
};

inline SoftmaxRow softmax_row(const std::vector<LD>& z) {
  const std::size_t C = z.size();
  SoftmaxRow r;
  r.logp.resize(C);
  r.logq.resize(C);
  r.p.resize(C);
  r.q.resize(C);
  std::size_t am = 0;
  for (std::size_t k = 1; k < C; ++k)
    if (z[k] > z[am]) am = k;
  // Second largest (the arg-max of the others), for log(1 - p_am).
  std::size_t j2 = C;
  for (std::size_t k = 0; k < C; ++k)
    if (k != am && (j2 == C || z[k] > z[j2])) j2 = k;
  auto exp_dd = [](DD d) { return std::exp(d.hi) * std::exp(d.lo); };
  LD R = 0;  // sum over k != am of exp(z_k - m)
  for (std::size_t k = 0; k < C; ++k)
    if (k != am) R += exp_dd(diff(z[k], z[am]));
  const LD log_s = std::log1p(R);  // log S with S = sum exp(z_k - m)
  r.s_other = R;
  for (std::size_t k = 0; k < C; ++k) {
    const DD d = diff(z[k], z[am]);
    r.logp[k] = {d.hi, d.lo - log_s};
    r.p[k] = exp_scaled(1, r.logp[k]);
  }
  for (std::size_t k = 0; k < C; ++k) {
    if (k != am) {
      // p_k <= 1/2: 1 - p_k and log1p(-p_k) are accurate.
      r.q[k] = 1 - r.p[k];
      r.logq[k] = {std::log1p(-r.p[k]), 0};
    } else if (j2 == C) {
      r.q[k] = 0;
      r.logq[k] = {-INFINITY, 0};
    } else {
      // 1 - p_am = S_o / S, log S_o = (z_j2 - m) + log1p(sum_{k != am, j2} exp(z_k - z_j2)).
      LD R2 = 0;
      for (std::size_t i = 0; i < C; ++i)
        if (i != am && i != j2) R2 += exp_dd(diff(z[i], z[j2]));
      const DD d = diff(z[j2], z[am]);
      r.logq[k] = {d.hi, d.lo + (std::log1p(R2) - log_s)};
      r.q[k] = exp_scaled(1, r.logq[k]);
    }
  }
  return r;
}

// Loss term L_k = alpha_k (1 - p_k)^g (-log p_k) and gradient factor
// F_k = alpha_k (1 - p_k)^g (g p_k (log p_k)/(1 - p_k) - 1) of class k.
struct ClassTerms {
  LD loss, f;
};

inline ClassTerms class_terms(const SoftmaxRow& r, std::size_t k, LD alpha_k, LD gamma) {
  const LD qg = exp_scaled(gamma, r.logq[k]);
  const LD logp = r.logp[k].value();
  const LD ratio = r.q[k] == 0 ? -1 : logp / r.q[k];
  const LD t = r.p[k] == 0 ? 0 : r.p[k] * ratio;
  return {alpha_k * qg * -logp, alpha_k * qg * (gamma * t - 1)};
}

struct SoftmaxResult {
  LD loss;
  std::vector<LD> grad;    // dFL/dz_k
  std::vector<LD> gscale;  // size of the terms of grad_k (dense targets)
};

// Class index c: FL = -alpha_c q^g log p_c, dFL/dz_k = F_c (delta_kc - p_k).
inline SoftmaxResult softmax_index(const std::vector<LD>& z, std::size_t c,
                                   const std::vector<LD>& alpha, LD gamma) {
  const SoftmaxRow r = softmax_row(z);
  const ClassTerms t = class_terms(r, c, alpha[c], gamma);
  SoftmaxResult out;
  out.loss = t.loss;
  out.grad.resize(z.size());
  out.gscale.assign(z.size(), 0);
  for (std::size_t k = 0; k < z.size(); ++k) out.grad[k] = k == c ? t.f * r.q[c] : -t.f * r.p[k];
  return out;
}

// Dense targets y: FL = sum_k y_k L_k,
// dFL/dz_j = y_j F_j (1 - p_j) - p_j sum_{k != j} y_k F_k.
inline SoftmaxResult softmax_dense(const std::vector<LD>& z, const std::vector<LD>& y,
                                   const std::vector<LD>& alpha, LD gamma) {
  const std::size_t C = z.size();
  const SoftmaxRow r = softmax_row(z);
  std::vector<ClassTerms> t(C);
  for (std::size_t k = 0; k < C; ++k) t[k] = class_terms(r, k, alpha[k], gamma);
  SoftmaxResult out;
  out.loss = 0;
  out.grad.resize(C);
  out.gscale.resize(C);
  for (std::size_t k = 0; k < C; ++k)
    if (y[k] != 0) out.loss += y[k] * t[k].loss;
  for (std::size_t j = 0; j < C; ++j) {
    LD rest = 0;  // every y_k F_k has the same sign: no cancellation
    for (std::size_t k = 0; k < C; ++k)
      if (k != j) rest += y[k] * t[k].f;
    const LD a = y[j] * t[j].f * r.q[j];
    const LD b = r.p[j] * rest;
    out.grad[j] = a - b;
    out.gscale[j] = std::fabs(a) + std::fabs(b);
  }
  return out;
}

}  // namespace fnref
