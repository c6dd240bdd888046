// Argument checks (checks.js) and the Python-style formatting their messages use (pyformat.js):
// each message as the Python runtime's checks.py words it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { asTensor, checkCount, checkRows, checkTemperature, condition, labelRows } from "../src/checks.js";
import { RuntimeInputError, VAEExportError } from "../src/errors.js";
import { formatShape, pyFloat, pyFormatG, pyJsonString, pyRepr, typeName } from "../src/pyformat.js";

const fails = (f, message) => assert.throws(f, (e) => e instanceof RuntimeInputError && e.message === message, message);

test("RuntimeInputError is a VAEExportError is an Error", () => {
  const e = new RuntimeInputError("x");
  assert.ok(e instanceof VAEExportError && e instanceof Error);
  assert.equal(e.name, "RuntimeInputError");
});

test("Python's repr, :g and json.dumps", () => {
  assert.equal(pyFloat(1), "1.0");
  assert.equal(pyFloat(0.25), "0.25");
  assert.equal(pyFloat(1e-5), "1e-05");
  assert.equal(pyFloat(1e16), "1e+16");
  assert.equal(pyFloat(123456.5), "123456.5");
  assert.equal(pyFloat(NaN), "nan");
  assert.equal(pyFloat(-Infinity), "-inf");
  assert.equal(pyRepr(2.5), "2.5");
  assert.equal(pyRepr(3), "3");
  assert.equal(pyRepr("it's"), '"it\'s"');
  assert.equal(pyRepr("a"), "'a'");
  assert.equal(pyRepr([64, 30]), "[64, 30]");
  assert.equal(pyRepr(null), "None");
  assert.equal(pyRepr(true), "True");
  assert.equal(pyFormatG(2), "2");
  assert.equal(pyFormatG(0.5, 4), "0.5");
  assert.equal(pyFormatG(1.23456, 4), "1.235");
  assert.equal(pyFormatG(1e-5, 4), "1e-05");
  assert.equal(pyFormatG(123456789, 4), "1.235e+08");
  assert.equal(pyFormatG(0.0001234, 4), "0.0001234");
  assert.equal(pyFormatG(10), "10");
  assert.equal(pyJsonString("é\"\n"), '"\\u00e9\\"\\n"');
  assert.equal(formatShape([4, null, null]), "[4, ?, ?]");
  assert.deepEqual([1, 1.5, "s", null, [], {}, new Float32Array(1)].map(typeName),
    ["int", "float", "str", "NoneType", "list", "dict", "Float32Array"]);
});

test("counts", () => {
  assert.equal(checkCount("n", 3, 1, 10), 3);
  assert.equal(checkCount("n", 3n, 1, 10), 3);
  fails(() => checkCount("n", 0, 1, 65536), "n: expected an integer from 1 to 65536, found 0");
  fails(() => checkCount("n", 70000, 1, 65536), "n: expected an integer from 1 to 65536, found 70000");
  fails(() => checkCount("n", 2.5, 1, 65536), "n: expected an integer from 1 to 65536, found float 2.5");
  fails(() => checkCount("n", true, 1, 65536), "n: expected an integer from 1 to 65536, found bool True");
  fails(() => checkCount("n", "3", 1, 65536), "n: expected an integer from 1 to 65536, found str '3'");
  fails(() => checkCount("n", undefined, 1, 65536), "n: expected an integer from 1 to 65536, found NoneType None");
});

test("temperature", () => {
  assert.equal(checkTemperature(0.5), 0.5);
  assert.equal(checkTemperature(10), 10);
  fails(() => checkTemperature(0), "temperature: expected a number in (0, 10], found 0");
  fails(() => checkTemperature(11.5), "temperature: expected a number in (0, 10], found 11.5");
  fails(() => checkTemperature(NaN), "temperature: expected a number in (0, 10], found nan");
  fails(() => checkTemperature("1"), "temperature: expected a number in (0, 10], found '1'");
});

test("arrays: {data, dims}, typed arrays, nested lists, numbers", () => {
  assert.deepEqual(asTensor({ data: new Float32Array(6), dims: [2, 3] }, "z").dims, [2, 3]);
  assert.equal(asTensor({ data: new Float64Array(2), dims: [2] }, "z").dtype, "float64");
  assert.deepEqual(asTensor([[1, 2], [3, 4]], "z"), { data: [1, 2, 3, 4], dims: [2, 2], dtype: "int64" });
  assert.equal(asTensor([0.5, 1], "z").dtype, "float64");
  assert.deepEqual(asTensor(7, "labels"), { data: [7], dims: [], dtype: "int64" });
  assert.deepEqual(asTensor(new Int32Array([1, 2]), "labels").dims, [2]);
  assert.equal(asTensor([true, false], "z").dtype, "bool");
  fails(() => asTensor([[1, 2], [3]], "z"), "z: expected an array, found list (ragged nested lists)");
  fails(() => asTensor({ data: new Float32Array(5), dims: [2, 3] }, "z"), "z: dims [2, 3] hold 6 values, found 5");
  fails(() => asTensor({ data: new Float32Array(6), dims: [2, -3] }, "z"), "z: expected dims of non-negative integers, found [2, -3]");
  fails(() => asTensor({ data: "abc", dims: [3] }, "z"), "z: expected data as a typed array or an array of numbers, found str");
  fails(() => asTensor(undefined, "z"), "z: expected an array, found NoneType");
  fails(() => asTensor([{}], "z"), "z: expected a numeric array, found list of objects");
});

test("labels: one-hot rows, and every rule", () => {
  assert.deepEqual(Array.from(labelRows([2, 0], 3, 2)), [0, 0, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(labelRows(1, 3, 2)), [0, 1, 0, 0, 1, 0]);
  fails(() => labelRows([1, 2, 3], 10, 2), "labels: expected one class index or 2 of them, found shape [3]");
  fails(() => labelRows([[1, 2]], 10, 2), "labels: expected one class index or 2 of them, found shape [1, 2]");
  fails(() => labelRows(10, 10, 2), "labels: expected class indices 0..9, found 10..10");
  fails(() => labelRows([-1, 3], 10, 2), "labels: expected class indices 0..9, found -1..3");
  fails(() => labelRows([1.5, 2], 10, 2), "labels: expected class indices 0..9, found float64");
  fails(() => labelRows(new Float32Array([1, 2]), 10, 2), "labels: expected class indices 0..9, found float32");
  fails(() => labelRows(["a", "b"], 10, 2, "y0"), "y0: expected class indices 0..9, found str");
});

test("y rows: shape, values, sums", () => {
  assert.deepEqual(Array.from(checkRows([[0.25, 0.75]], 2, 1)), [0.25, 0.75]);
  fails(() => checkRows([[0.5, 0.5]], 3, 1), "y: expected shape [1, 3] (one row of 3 class weights per item), found [1, 2]");
  fails(() => checkRows([[0.5, NaN]], 2, 1), "y: expected finite class weights >= 0");
  fails(() => checkRows([[-1, 2]], 2, 1), "y: expected finite class weights >= 0");
  fails(() => checkRows([[1, 0], [0.5, 0.25]], 2, 2), "y: each row must sum to 1 (a one-hot row or a mix of classes), row 1 sums to 0.75");
  fails(() => checkRows([[true, false]], 2, 1), "y: expected a real-valued array, found dtype bool");
});

test("condition: labels or y, exactly one for a conditional graph, neither otherwise", () => {
  assert.equal(condition(undefined, undefined, 0, 2), null);
  fails(() => condition(undefined, [1, 2], 0, 2), "labels: this graph is not conditional (it takes no class)");
  fails(() => condition([[1]], undefined, 0, 1), "y: this graph is not conditional (it takes no class)");
  const both = "labels: this graph is conditional on 10 classes; pass labels= (class indices) or y= (rows of class " +
    "weights), one of them";
  fails(() => condition(undefined, undefined, 10, 2), both);
  fails(() => condition([[1, 0]], [0], 2, 1), both.replace("10 classes", "2 classes"));
  assert.deepEqual(Array.from(condition(null, [1], 2, 1)), [0, 1]);
});
