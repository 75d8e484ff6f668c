// Stiff benchmark model: mass-action Michaelis–Menten kinetics with fast enzyme binding.
// The same posterior as benchmarks/model_scripts/michaelis_menten.py (see its docstring);
// the ODE is solved with CVODES BDF at the tolerances passed as data (same as the bayesbio side).
functions {
  vector mm_rhs(real t, vector z, vector k, real E0) {
    real s = z[1];
    real c = z[2];
    real v_bind = k[1] * (E0 - c) * s - k[2] * c;
    real v_cat = k[3] * c;
    return [-v_bind, v_bind - v_cat, v_cat]';
  }
}
data {
  int<lower=1> N;
  array[N] real ts;
  array[N] vector[3] y;
  vector[3] y0;
  real<lower=0> E0;
  vector<lower=0>[3] prior_median;
  real<lower=0> prior_log_sd;
  real<lower=0> sigma_scale;
  real<lower=0> rtol;
  real<lower=0> atol;
  int<lower=1> max_num_steps;
}
parameters {
  vector<lower=0>[3] k; // kf, kr, kcat
  real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[3] z = ode_bdf_tol(mm_rhs, y0, 0, ts, rtol, atol, max_num_steps, k, E0);
}
model {
  k ~ lognormal(log(prior_median), prior_log_sd);
  sigma ~ normal(0, sigma_scale);
  for (n in 1 : N) {
    y[n] ~ normal(z[n], sigma);
  }
}
