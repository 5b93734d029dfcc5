//! Evaluation of expressions against a [`Target`].

use crate::{funcs, index, CmpOp, Expr, MathOp, Target, Value};

pub(crate) fn eval(e: &Expr, t: &dyn Target) -> Result<Value, String> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Path(p) => t.get(p)?,
        Expr::Call(c, keys) => {
            let v = funcs::call_converter(c, t)?;
            if keys.is_empty() {
                v
            } else {
                index(v, keys)?
            }
        }
        Expr::MapLit(items) => {
            let mut m = Vec::with_capacity(items.len());
            for (k, x) in items {
                m.push(crate::kv(k.clone(), eval(x, t)?));
            }
            Value::Map(m)
        }
        Expr::ListLit(items) => Value::List(
            items
                .iter()
                .map(|x| eval(x, t).map(Value::into_any))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Neg(a) => match eval(a, t)? {
            Value::Int(i) => Value::Int(i.checked_neg().ok_or("integer overflow")?),
            Value::Double(d) => Value::Double(-d),
            v => return Err(format!("cannot negate a {}", v.kind())),
        },
        Expr::Math(a, op, b) => math(eval(a, t)?, *op, eval(b, t)?)?,
        Expr::Cmp(a, op, b) => Value::Bool(compare(&eval(a, t)?, *op, &eval(b, t)?)),
        // Both sides short-circuit, as in OTTL and expr.
        Expr::And(a, b) => Value::Bool(truthy(eval(a, t)?)? && truthy(eval(b, t)?)?),
        Expr::Or(a, b) => Value::Bool(truthy(eval(a, t)?)? || truthy(eval(b, t)?)?),
        Expr::Not(a) => Value::Bool(!truthy(eval(a, t)?)?),
        Expr::Matches(a, re) => Value::Bool(match eval(a, t)? {
            Value::Str(s) => re.is_match(&s),
            _ => false,
        }),
        Expr::Contains(a, b) => Value::Bool(match (eval(a, t)?, eval(b, t)?) {
            (Value::Str(x), Value::Str(y)) => x.contains(&y),
            _ => false,
        }),
        Expr::StartsWith(a, b) => Value::Bool(match (eval(a, t)?, eval(b, t)?) {
            (Value::Str(x), Value::Str(y)) => x.starts_with(&y),
            _ => false,
        }),
        Expr::EndsWith(a, b) => Value::Bool(match (eval(a, t)?, eval(b, t)?) {
            (Value::Str(x), Value::Str(y)) => x.ends_with(&y),
            _ => false,
        }),
        Expr::Func(f) => {
            return Err(format!(
                "{} is named without arguments: only the replace_* editors take a function",
                funcs::func_name(*f)
            ))
        }
    })
}

fn truthy(v: Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(format!("expected a boolean, got a {}", other.kind())),
    }
}

/// OTTL's math: ints stay ints (overflow and division by zero are errors), a double on either side
/// makes a double, and times minus times give nanoseconds.
pub(crate) fn math(a: Value, op: MathOp, b: Value) -> Result<Value, String> {
    use Value::*;
    Ok(match (a, b) {
        (Int(x), Int(y)) => Int(match op {
            MathOp::Add => x.checked_add(y),
            MathOp::Sub => x.checked_sub(y),
            MathOp::Mul => x.checked_mul(y),
            MathOp::Div if y == 0 => return Err("division by zero".into()),
            MathOp::Div => x.checked_div(y),
        }
        .ok_or("integer overflow")?),
        (Int(x), Double(y)) => Double(fmath(x as f64, op, y)?),
        (Double(x), Int(y)) => Double(fmath(x, op, y as f64)?),
        (Double(x), Double(y)) => Double(fmath(x, op, y)?),
        (Time(x), Time(y)) if op == MathOp::Sub => Int(x.checked_sub(y).ok_or("time overflow")?),
        (Time(x), Int(y)) if matches!(op, MathOp::Add | MathOp::Sub) => Time(
            if op == MathOp::Add {
                x.checked_add(y)
            } else {
                x.checked_sub(y)
            }
            .ok_or("time overflow")?,
        ),
        (a, b) => {
            return Err(format!(
                "cannot apply {op:?} to a {} and a {}",
                a.kind(),
                b.kind()
            ))
        }
    })
}

fn fmath(x: f64, op: MathOp, y: f64) -> Result<f64, String> {
    Ok(match op {
        MathOp::Add => x + y,
        MathOp::Sub => x - y,
        MathOp::Mul => x * y,
        MathOp::Div if y == 0.0 => return Err("division by zero".into()),
        MathOp::Div => x / y,
    })
}

/// OTTL comparison: values of different kinds are unequal (ints and doubles compare as numbers);
/// an ordering between values that have none is false.
pub(crate) fn compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    use std::cmp::Ordering;
    use Value::*;
    let ord: Option<Ordering> = match (a, b) {
        (Nil, Nil) => Some(Ordering::Equal),
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Int(x), Int(y)) | (Time(x), Time(y)) => Some(x.cmp(y)),
        (Int(x), Double(y)) => (*x as f64).partial_cmp(y),
        (Double(x), Int(y)) => x.partial_cmp(&(*y as f64)),
        (Double(x), Double(y)) => x.partial_cmp(y),
        (Bool(_), Bool(_)) | (Bytes(_), Bytes(_)) | (Map(_), Map(_)) | (List(_), List(_)) => {
            return match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                _ => false,
            }
        }
        _ => None,
    };
    match (ord, op) {
        (Some(o), CmpOp::Eq) => o == Ordering::Equal,
        (Some(o), CmpOp::Ne) => o != Ordering::Equal,
        (None, CmpOp::Ne) => true,
        (None, _) => false,
        (Some(o), CmpOp::Lt) => o == Ordering::Less,
        (Some(o), CmpOp::Le) => o != Ordering::Greater,
        (Some(o), CmpOp::Gt) => o == Ordering::Greater,
        (Some(o), CmpOp::Ge) => o != Ordering::Less,
    }
}
